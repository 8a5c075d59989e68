"""numba's cache folder. The stages' numba kernels are compiled with cache=True. numba keeps that
cache in the source folder's __pycache__ or in the user's cache folder (~/.cache/numba), and stops
with "cannot cache function" when it can write neither (an installation owned by another user, a
user without a writable HOME). base/__init__.py runs ensure_numba_cache() before any kernel module
decorates its first function (every one of them imports base first), so such a case gets a private
folder of the temporary directory instead.
"""

import os
import stat
import sys
import tempfile

# A folder holding kernel modules: numba caches next to each source file, in its __pycache__.
_KERNEL_FOLDER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "stages")


def _writable_folder(path):
    """Whether files can be created in `path` (created if missing), tried as numba will try it."""
    try:
        os.makedirs(path, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
        return True
    except OSError:
        return False


def _private_folder(path):
    """`path` as a folder only this user can write (created if missing), or None: a cache folder
    others could write would let them plant compiled code."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return None
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022:
        return None
    return path if _writable_folder(path) else None


def ensure_numba_cache(source_folder=_KERNEL_FOLDER, environ=os.environ):
    """Make sure numba has a cache folder it can write; returns the folder set in
    NUMBA_CACHE_DIR, or None when numba's own choices work (or the user set one)."""
    if environ.get("NUMBA_CACHE_DIR"):
        return None
    home_cache = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    if _writable_folder(os.path.join(source_folder, "__pycache__")) or _writable_folder(os.path.join(home_cache, "numba")):
        return None
    uid = os.getuid() if hasattr(os, "getuid") else 0
    folder = _private_folder(os.path.join(tempfile.gettempdir(), f"tezip-numba-cache-{uid}"))
    if folder is None:
        try:
            folder = tempfile.mkdtemp(prefix="tezip-numba-cache-")  # private, used by this run only
        except OSError:
            return None  # nowhere to write at all: numba reports it
    environ["NUMBA_CACHE_DIR"] = folder
    if "numba" in sys.modules:  # already imported (numba reads the variable at import): tell it too
        sys.modules["numba"].config.CACHE_DIR = folder
    return folder



class _NoScipyLinalg:
    """A meta path finder refusing scipy.linalg (skip_blas_probe, for the length of one import)."""

    def find_spec(self, name, path=None, target=None):
        if name == "scipy.linalg" or name.startswith("scipy.linalg."):
            raise ImportError("scipy.linalg is not needed to start TEZip's kernels")
        return None


def skip_blas_probe():
    """Spare every process numba's BLAS probe: numba.np.arraymath, which numba imports when it
    compiles or loads its first kernel, imports scipy.linalg only to learn whether np.dot and the
    like could work in compiled code (0.17 s of a 2 s run on 60 frames; TEZip's kernels use none of
    them). It is imported here once with scipy.linalg refused, so the probe says no; a kernel that
    does use them still gets BLAS, which numba imports when it compiles one. Nothing happens when
    either module is imported already, and when that import fails for another reason numba
    imports the module itself at its first use, as it would have."""
    if "numba.np.arraymath" in sys.modules or "scipy.linalg" in sys.modules:
        return
    blocker = _NoScipyLinalg()
    sys.meta_path.insert(0, blocker)
    try:
        import numba.np.arraymath  # noqa: F401
    except Exception:  # noqa: BLE001 (a numba that needs scipy.linalg here: left to import it normally)
        pass
    finally:
        sys.meta_path.remove(blocker)
