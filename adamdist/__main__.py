"""``python -m adamdist COMMAND``: the package's command line (``report``)."""

from __future__ import annotations

import sys

USAGE = """usage: python -m adamdist COMMAND ...

commands:
  report RUN.npz -o report.html   a self-contained HTML report of a saved recording
                                  (python -m adamdist report --help)
"""


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "report":
        from .report import main as report

        return report(rest)
    print(f"python -m adamdist: unknown command {command!r}\n\n{USAGE}", end="", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
