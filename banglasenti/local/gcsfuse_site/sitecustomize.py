"""Cloud Storage FUSE semantics for local runs: what the /gcs/ mount of Vertex AI refuses, refused here too.

Python imports this module at start-up when its directory is on PYTHONPATH. While $BANGLASENTI_GCSFUSE_ROOTS
names directories (separated by os.pathsep), for paths under them:

- renaming a non-empty directory fails with EMFILE, as gcsfuse does on a flat bucket with the default
  `--rename-dir-limit` 0 (internal/fs/fs.go renameNonHierarchicalDir: "too many objects to be renamed");
  an empty directory may be renamed;
- a rename between a root and a path outside every root fails with EXDEV (another file system);
- hard links fail with ENOSYS (gcsfuse implements no FUSE link operation).

File renames go through (gcsfuse copies and deletes the object). os.rename, os.replace, os.renames and os.link
are patched, which covers shutil.move (it falls back to copy and delete, as on the mount), pathlib's
rename/replace/hardlink_to and every Python caller; renames made by native code are not seen.
Standard library only: this runs in every Python process started with it on the path.
"""

import errno
import importlib.machinery
import importlib.util
import os
import sys

ROOTS_ENV = "BANGLASENTI_GCSFUSE_ROOTS"
_PATCHED = "_banglasenti_gcsfuse"


def _roots() -> list[str]:
    return [os.path.realpath(p) for p in os.environ.get(ROOTS_ENV, "").split(os.pathsep) if p]


def _root_of(path) -> str | None:
    try:
        real = os.path.realpath(os.fspath(path))
    except TypeError:  # a file descriptor: not a path we can place
        return None
    for root in _roots():
        if real == root or real.startswith(root.rstrip(os.sep) + os.sep):
            return root
    return None


def _check_rename(src, dst, src_dir_fd=None, dst_dir_fd=None) -> None:
    if src_dir_fd is not None or dst_dir_fd is not None:
        return
    src_root, dst_root = _root_of(src), _root_of(dst)
    if src_root is None and dst_root is None:
        return
    if src_root != dst_root:
        raise OSError(errno.EXDEV, "Invalid cross-device link (Cloud Storage FUSE mount boundary)", src, None, dst)
    if os.path.isdir(src) and not os.path.islink(src) and os.listdir(src):
        raise OSError(
            errno.EMFILE,
            "Too many open files (Cloud Storage FUSE cannot rename a non-empty directory: "
            "too many objects to be renamed)",
            src,
            None,
            dst,
        )


def install() -> None:
    """Patch os.rename, os.replace, os.renames and os.link (once per process)."""
    if getattr(os.rename, _PATCHED, False):
        return
    rename, replace, link = os.rename, os.replace, os.link

    def fuse_rename(src, dst, *, src_dir_fd=None, dst_dir_fd=None):
        _check_rename(src, dst, src_dir_fd, dst_dir_fd)
        return rename(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)

    def fuse_replace(src, dst, *, src_dir_fd=None, dst_dir_fd=None):
        _check_rename(src, dst, src_dir_fd, dst_dir_fd)
        return replace(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)

    def fuse_link(src, dst, *, src_dir_fd=None, dst_dir_fd=None, follow_symlinks=True):
        if src_dir_fd is None and dst_dir_fd is None and (_root_of(src) or _root_of(dst)):
            raise OSError(
                errno.ENOSYS, "Function not implemented (Cloud Storage FUSE has no hard links)", src, None, dst
            )
        return link(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd, follow_symlinks=follow_symlinks)

    for patched, original in ((fuse_rename, rename), (fuse_replace, replace), (fuse_link, link)):
        patched.__name__, patched.__doc__ = original.__name__, original.__doc__
        setattr(patched, _PATCHED, True)
    os.rename, os.replace, os.link = fuse_rename, fuse_replace, fuse_link
    # os.renames calls the module-level rename, so it is covered; shutil and pathlib look os.* up at call time.


def _chain_next_sitecustomize() -> None:
    """Run the sitecustomize this one shadows (a distribution's own), if there is one further down the path."""
    here = os.path.dirname(os.path.realpath(__file__))
    rest = [p for p in sys.path if os.path.realpath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is not None and spec.loader is not None:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)


if os.environ.get(ROOTS_ENV):
    install()
if __name__ == "sitecustomize":
    _chain_next_sitecustomize()
