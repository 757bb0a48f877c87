"""Datasets of Procgen frames: ``sample_generator_heist_basic`` (any game, fresh levels) and
``sample_generator_heist`` (balanced Heist), both labelled exactly from the emulator state
(``labels`` holds the contract) and split into training and test by level."""
