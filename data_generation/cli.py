"""``gym-autoencoder-generate``: one command for both generators.

    gym-autoencoder-generate balanced --num-samples 20000 --output-dir data/balanced
    gym-autoencoder-generate basic --game coinrun --distribution-mode easy --num-samples 5000 --output-dir data/coinrun
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from gym_autoencoder.data_generation import sample_generator_heist, sample_generator_heist_basic

GENERATORS = {"balanced": sample_generator_heist, "basic": sample_generator_heist_basic}
USAGE = (
    "usage: gym-autoencoder-generate {balanced,basic} [options]\n\n"
    "  balanced  Heist frames with exact, class-balanced object shares (the training data)\n"
    "  basic     frames of any Procgen game, each from a fresh level\n\n"
    "'gym-autoencoder-generate KIND --help' lists each generator's options.\n"
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the generator named by the first argument with the remaining ones."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0
    if args[0] not in GENERATORS:
        print(f"error: unknown generator {args[0]!r}; choose balanced or basic; see --help", file=sys.stderr)
        return 2
    return GENERATORS[args[0]].main(args[1:])


if __name__ == "__main__":
    sys.exit(main())
