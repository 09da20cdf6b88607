"""``make bench``: the CPU benchmark set, each writing its JSON under benchmarks/results/."""

from __future__ import annotations

from benchmarks import codec_speed


def main() -> None:
    codec_speed.main(["--N", "32", "--crop", "256"])
    codec_speed.main(["--N", "192", "--crop", "256", "--repeats", "1"])


if __name__ == "__main__":
    main()
