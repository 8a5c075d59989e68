"""pyproject.toml: the wheel carries the code, the bundled default model and the two console entry points."""

import shutil
import subprocess
import sys
import tomllib
import zipfile

import pytest

from conftest import REPO_ROOT

# The code's packages: the command line imports every one of them.
PACKAGES = ("base", "stages", "sequence", "archive", "frames", "prednet", "compress", "decompress", "cluster")
PACKAGED = ("tezip.py", "train_data_create.py", "pyproject.toml", "README.md") + PACKAGES
def requirement_lines(path):
    lines = path.read_text().split("# tests")[0].splitlines()
    requirements = (line.split("#")[0].strip() for line in lines)
    return sorted(r for r in requirements if r and not r.startswith("-"))


def test_pyproject_dependencies_match_requirements():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert sorted(project["dependencies"]) == requirement_lines(REPO_ROOT / "requirements.txt")
    assert project["scripts"] == {"tezip": "tezip:console_main", "train-data-create": "train_data_create:main"}
    assert any(dep.startswith("cupy-cuda12x") for dep in project["optional-dependencies"]["gpu"])


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """Build the wheel from a copy of the sources and install it (without dependencies) into a folder."""
    tmp = tmp_path_factory.mktemp("pkg")
    src = tmp / "src"
    src.mkdir()
    for name in PACKAGED:
        path = REPO_ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(pip + ["wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"), str(src)], check=True)
    (wheel,) = (tmp / "dist").glob("tezip-*.whl")
    subprocess.run(pip + ["install", "--no-deps", "--target", str(tmp / "site"), str(wheel)], check=True)
    return wheel, tmp / "site"


def test_every_package_of_the_code_is_listed():
    """Every folder of the repository with an __init__.py is one of PACKAGES (which the wheel must hold)."""
    found = {p.parent.name for p in REPO_ROOT.glob("*/__init__.py")}
    assert found == set(PACKAGES)


def test_pyproject_lists_every_package():
    setuptools = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert sorted(setuptools["packages"]) == sorted(PACKAGES)


def test_wheel_holds_code_default_model_and_entry_points(installed):
    wheel, _ = installed
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        entry_points = next(z.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    for needed in ("tezip.py", "train_data_create.py", "prednet/model.py", "compress/pipeline.py",
                   "decompress/pipeline.py", "prednet/default_model/prednet_model.json",
                   "prednet/default_model/prednet_weights.hdf5", "base/errors.py", "stages/chain.py",
                   "sequence/plan.py", "archive/v2.py", "archive/v3.py", "decompress/v2.py",
                   "prednet/reference.py"):
        assert needed in names, needed
    assert "tezip = tezip:console_main" in entry_points and "train-data-create = train_data_create:main" in entry_points


def test_installed_copy_compresses_with_its_default_model(installed, tmp_path):
    """Run from outside the repository, so only the installed copy can be imported."""
    from conftest import make_sequence

    _, site = installed
    make_sequence(tmp_path / "img", n_frames=5, height=16, width=24, seed=9)
    code = ("import sys, tezip, prednet.modelfile as m; print(m.DEFAULT_MODEL_DIR); "
            "sys.exit(tezip.main(sys.argv[1:]))")
    env = {**__import__("os").environ, "PYTHONPATH": str(site)}
    for args in (["-c", "default", "img", "comp", "-w", "3", "-f"], ["-u", "default", "comp", "out", "-f"]):
        r = subprocess.run([sys.executable, "-c", code, *args], cwd=tmp_path, env=env, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-2000:]
        assert r.stdout.splitlines()[0].startswith(str(site))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in (tmp_path / "img").iterdir())


def test_imagecodecs_is_a_dependency():
    """tifffile decodes LZW-, deflate- and zstd-compressed TIFF stacks with imagecodecs."""
    names = [r.split(">")[0].split("=")[0].split("<")[0].strip() for r in requirement_lines(REPO_ROOT / "requirements.txt")]
    assert "imagecodecs" in names


def test_numba_cache_falls_back_when_neither_source_tree_nor_home_is_writable(tmp_path):
    """A user whose HOME does not exist (and cannot be created) running a copy of TEZip whose
    source tree they cannot write: numba's cache goes to a private folder of the temporary
    directory instead of stopping with "cannot cache function". (Unwritable made so that root is
    stopped too: a file where the folders would have to be.)"""
    import os

    pkg = tmp_path / "pkg"
    for package in ("base", "stages"):
        shutil.copytree(REPO_ROOT / package, pkg / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        (pkg / package / "__pycache__").write_text("a file: no cache folder can be made here")
    (tmp_path / "not_a_folder").write_text("")
    temp = tmp_path / "temp"
    temp.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_") and k != "XDG_CACHE_HOME"}
    env.update(HOME=str(tmp_path / "not_a_folder" / "home"), PYTHONPATH=str(pkg), TMPDIR=str(temp),
               PYTHONDONTWRITEBYTECODE="1")
    code = ("import numpy as np, os, stages.ctxrange as r; c = r.ContextRangeCoder(); "
            "x = np.arange(24, dtype=np.int32).reshape(2, 3, 4); "
            "assert (c.decode(c.encode(x), np.empty(x.shape, np.int32)) == x).all(); print(os.environ['NUMBA_CACHE_DIR'])")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    cache = r.stdout.strip()
    assert cache.startswith(str(temp)) and any(os.scandir(cache))  # kernels were cached there
    assert (os.stat(cache).st_mode & 0o077) == 0


def test_compressing_skips_numbas_blas_probe_and_blas_still_works(tmp_path):
    """base.skip_blas_probe: a -c none run in a fresh process never imports scipy.linalg (numba's
    probe of it took 0.17 s a process), and a kernel that uses BLAS still compiles afterwards."""
    import subprocess
    import sys as _sys

    from conftest import make_sequence

    make_sequence(tmp_path / "in", n_frames=3, height=16, width=24, seed=1)
    script = (
        "import sys, tezip, numpy as np\n"
        f"assert tezip.main(['-c', 'none', {str(tmp_path / 'in')!r}, {str(tmp_path / 'c')!r}, '-w', '2']) in (0, None)\n"
        "before = 'scipy.linalg' in sys.modules\n"
        "import numba.np.arraymath as m\n"
        "from numba import njit\n"
        "dot = njit(lambda a, b: np.dot(a, b))\n"
        "print('RESULT', before, m._HAVE_BLAS, float(dot(np.ones(3), np.full(3, 2.0))))\n")
    run = subprocess.run([_sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         cwd=str(REPO_ROOT))
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().splitlines()[-1] == "RESULT False False 6.0"
