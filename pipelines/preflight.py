"""Check a Vertex AI submission without submitting it: `submit.py --check` under its own name.

    python pipelines/preflight.py --project my-proj --region us-central1 --staging-bucket gs://my-bucket \\
        --set pipeline.cpu_image=... --set pipeline.train_image=...

Takes every flag of pipelines/submit.py and reports, one line each, what would stop or slow the run (placeholder
images, the bucket's location, a region without the training accelerator, a malformed service account, disabled
APIs); exit 2 if any of it blocks. Only reads (the buckets' metadata and the enabled APIs). The checks:
banglasenti/cloud/preflight_checks.py.
"""

from __future__ import annotations

import sys

from pipelines import submit


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    return submit.main(["--check", *args])


if __name__ == "__main__":
    raise SystemExit(main())
