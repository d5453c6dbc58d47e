"""Print what differs between two folders of locks, a line per package: `make upgrade-check` shows with it what
resolving the newest versions the ranges allow would change.

    python containers/lock_changes.py containers/locks /tmp/banglasenti-upgrade.XXXX/locks
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


def canonical(name: str) -> str:
    """A package name as PyPI compares it (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path) -> dict[str, tuple[str, set[str]]]:
    """name -> (version, sha256 hashes) of a `uv pip compile --generate-hashes` file; a line that is neither a
    pin, a hash nor a comment is an error naming the file and line."""
    pins: dict[str, tuple[str, set[str]]] = {}
    current = None
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip().rstrip("\\").strip()
        if not line:
            continue
        if line.startswith("--hash=sha256:"):
            if current is None:
                raise ValueError(f"{path}:{number}: a hash before any requirement")
            pins[current][1].add(line.removeprefix("--hash=sha256:"))
            continue
        match = PIN.match(line)
        if not match or match.end() != len(line):
            raise ValueError(f"{path}:{number}: not an exact pin: {line}")
        current = canonical(match.group(1))
        pins[current] = (match.group(2), set())
    return pins


def lock_versions(path: Path) -> dict[str, str]:
    return {name: version for name, (version, _) in read_lock(path).items()}


def changes(old_dir: Path, new_dir: Path) -> list[str]:
    """A line per package whose version differs in any lock present in both folders, with the locks it differs
    in: 'transformers 5.24.0 -> 5.25.0 (cpu, dev, tpu, xla)', '+ kernels 0.19.1 (...)', '- name 1.0 (...)'."""
    found: dict[tuple[str, str | None, str | None], list[str]] = {}
    for old_path in sorted(old_dir.glob("*.txt")):
        new_path = new_dir / old_path.name
        if not new_path.exists():
            continue
        old, new = lock_versions(old_path), lock_versions(new_path)
        for name in sorted(set(old) | set(new)):
            if old.get(name) != new.get(name):
                found.setdefault((name, old.get(name), new.get(name)), []).append(old_path.stem)
    lines = []
    for (name, before, after), locks in sorted(found.items()):
        where = f" ({', '.join(locks)})"
        if before is None:
            lines.append(f"+ {name} {after}{where}")
        elif after is None:
            lines.append(f"- {name} {before}{where}")
        else:
            lines.append(f"{name} {before} -> {after}{where}")
    return lines


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    try:
        lines = changes(Path(argv[0]), Path(argv[1]))
    except (OSError, ValueError) as err:
        print(f"lock_changes: {err}", file=sys.stderr)
        return 2
    print("\n".join(lines) if lines else "no version changes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
