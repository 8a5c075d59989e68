"""A model directory: `prednet_model.json` (architecture and config) + `prednet_weights.hdf5`.

The weights file is plain HDF5 written with h5py (one dataset per variable, by path), so it does
not depend on a Keras saving format and loads the same under every backend. The model digest
(hash of the config and of every weight's bytes) identifies the model inside archives: a file
compressed with one model refuses to decode with another.
"""

import hashlib
import json
from pathlib import Path

import numpy as np

from base.errors import TezipError

MODEL_JSON = "prednet_model.json"
WEIGHTS_FILE = "prednet_weights.hdf5"
MODEL_FORMAT = "tezip-prednet"
MODEL_FORMAT_VERSION = 1

# `-c default …` / `-u default …` select the small model bundled with TEZip (see
# prednet/default_model/README.md for how it was trained). A local folder named "default" is
# reached as ./default.
DEFAULT_MODEL = "default"
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default_model"

# Keys of PredNet.get_config() that describe the architecture (the rest is Keras bookkeeping).
ARCH_KEYS = (
    "stack_sizes",
    "R_stack_sizes",
    "A_filt_sizes",
    "Ahat_filt_sizes",
    "R_filt_sizes",
    "pixel_max",
    "error_activation",
    "A_activation",
    "LSTM_activation",
    "LSTM_inner_activation",
)
# Present only in models with a linear skip (prednet.model.LinearSkip), so the architecture, and so
# the digest, of every model without one is what it always was.
SKIP_KEYS = ("skip_filt_size", "skip_gain", "skip_correction_scale")
# ... and the number of previous frames the skip sees, only when not 2 (every model with a skip
# before this key existed sees 2 and keeps its digest).
SKIP_FRAMES_KEY = "skip_frames"
# ... and, only in models whose layer 0 also sees the skip's planes (PredNet frame_input_*), their
# normalisation.
FRAME_INPUT_KEYS = ("frame_input_offset", "frame_input_scale")


def architecture(prednet):
    config = prednet.get_config()
    arch = {k: config[k] for k in ARCH_KEYS}
    if config.get("skip_filt_size"):
        arch.update({k: config[k] for k in SKIP_KEYS})
        if int(config.get(SKIP_FRAMES_KEY, 2)) != 2:
            arch[SKIP_FRAMES_KEY] = int(config[SKIP_FRAMES_KEY])
        if config.get(FRAME_INPUT_KEYS[0]) is not None:
            arch.update({k: [float(v) for v in config[k]] for k in FRAME_INPUT_KEYS})
    return arch


def weight_key(variable):
    """A variable's path inside the PredNet layer ("lstm_0/kernel"), whatever the layer is named."""
    return variable.path.split("/", 1)[-1]


def _weights_by_path(prednet):
    import keras

    return {weight_key(v): keras.ops.convert_to_numpy(v) for v in prednet.weights}


def model_digest(arch, weights):
    """sha256 over the architecture and each weight (sorted by path, with shape and dtype)."""
    h = hashlib.sha256()
    h.update(json.dumps(arch, sort_keys=True).encode())
    for path in sorted(weights):
        w = np.ascontiguousarray(weights[path], dtype=np.float32)
        h.update(path.encode())
        h.update(str(w.shape).encode())
        h.update(w.tobytes())
    return h.hexdigest()


def save_model(model_dir, prednet, training_info=None):
    """Write the model's two files (MODEL_JSON, WEIGHTS_FILE) into model_dir, a folder path or an
    open base.publish.OutputFolder (training holds one, locked, for its whole run): both published
    together or neither (temporary names, synced, then renamed). Returns the model digest (str).
    Raises TezipError when the folder cannot be written."""
    import io

    import h5py

    from base.publish import OutputFolder

    arch = architecture(prednet)
    weights = _weights_by_path(prednet)
    digest = model_digest(arch, weights)
    doc = {
        "format": MODEL_FORMAT,
        "version": MODEL_FORMAT_VERSION,
        "architecture": arch,
        "digest": digest,
        "training": training_info or {},
    }
    hdf5 = io.BytesIO()
    with h5py.File(hdf5, "w") as f:
        f.attrs["format"] = MODEL_FORMAT
        f.attrs["digest"] = digest
        for path, w in weights.items():
            f.create_dataset(path, data=w)
    contents = [hdf5.getvalue(), (json.dumps(doc, indent=2) + "\n").encode()]
    names = [WEIGHTS_FILE, MODEL_JSON]
    if isinstance(model_dir, OutputFolder):
        model_dir.publish(names, lambda i, f: f.write(contents[i]))
    else:
        with OutputFolder(model_dir, overwrite=True, label="MODEL_DIR") as folder:
            folder.publish(names, lambda i, f: f.write(contents[i]))
    return digest


def is_default_model(model_dir):
    """Whether MODEL_DIR is the keyword `default` (the bundled model): the string itself only, so
    that a folder of that name is given as ./default (a str "./default", or any Path, is a folder)."""
    return isinstance(model_dir, str) and model_dir == DEFAULT_MODEL


def resolve_model_dir(model_dir):
    """The folder a MODEL_DIR argument names: the bundled model for "default" (is_default_model),
    else the path."""
    if is_default_model(model_dir):
        if not (DEFAULT_MODEL_DIR / MODEL_JSON).is_file():
            raise TezipError(f"the bundled default model is missing from this installation ({DEFAULT_MODEL_DIR})")
        return DEFAULT_MODEL_DIR
    return Path(model_dir)


def model_label(model_dir):
    """How archives and messages name a model: "default" for the bundled one, else its folder."""
    return DEFAULT_MODEL if resolve_model_dir(model_dir) == DEFAULT_MODEL_DIR else str(model_dir)


def default_model_digest():
    """The bundled model's digest (from its description; None when it is not installed)."""
    try:
        return json.loads((DEFAULT_MODEL_DIR / MODEL_JSON).read_text()).get("digest")
    except (OSError, ValueError):
        return None


def read_model_json(model_dir):
    model_dir = resolve_model_dir(model_dir)
    if not model_dir.is_dir():
        raise TezipError(f"model folder {model_dir} does not exist")
    path = model_dir / MODEL_JSON
    if not path.is_file():
        raise TezipError(f"model file {path} is missing (train one with: python tezip.py -l {model_dir} DATA_DIR)")
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:  # ValueError: JSON, over-long numbers
        raise TezipError(f"model file {path} is not readable JSON ({' '.join(str(e).split())[:120]})") from None
    if (not isinstance(doc, dict) or doc.get("format") != MODEL_FORMAT or not isinstance(doc.get("architecture"), dict)
            or type(doc.get("version", 0)) is not int):
        raise TezipError(f"model file {path} is not a TEZip PredNet model description")
    if doc.get("version", 0) > MODEL_FORMAT_VERSION:
        raise TezipError(f"model file {path} has format version {doc['version']}; this TEZip reads up to {MODEL_FORMAT_VERSION}")
    return doc


# Loaded models by (folder, file stamps, output mode): batch mode compresses many sequences with one.
_loaded = {}


def _stamp(path):
    try:
        st = path.stat()
        return st.st_mtime_ns, st.st_size
    except OSError:
        return None


def load_model(model_dir, output_mode="prediction", extrap_start_time=None):
    """Build the PredNet layer of a model folder and load its weights. Returns (prednet, doc).
    A model already loaded from unchanged files is reused (the layer holds no per-run state)."""
    model_dir = resolve_model_dir(model_dir)
    key = (str(model_dir.resolve()), _stamp(model_dir / MODEL_JSON), _stamp(model_dir / WEIGHTS_FILE), output_mode,
           extrap_start_time)
    if key not in _loaded:
        _loaded.clear()  # one model at a time: a layer can be large
        _loaded[key] = _load_model(model_dir, output_mode, extrap_start_time)
    prednet, doc = _loaded[key]
    return prednet, dict(doc)


def _load_model(model_dir, output_mode, extrap_start_time):
    import h5py

    from prednet.model import PredNet

    doc = read_model_json(model_dir)
    try:
        prednet = PredNet(**doc["architecture"], output_mode=output_mode, extrap_start_time=extrap_start_time, name="prednet")
    except (TypeError, ValueError) as e:
        raise TezipError(f"model file {model_dir / MODEL_JSON} describes an invalid architecture ({e})") from None
    prednet.build()
    wpath = model_dir / WEIGHTS_FILE
    if not wpath.is_file():
        raise TezipError(f"model file {wpath} is missing")
    try:
        with h5py.File(wpath, "r") as f:
            for v in prednet.weights:
                key = weight_key(v)
                if key not in f:
                    raise TezipError(f"model weights {wpath} lack {key}: they belong to another architecture")
                w = f[key][()]
                if tuple(w.shape) != tuple(v.shape):
                    raise TezipError(f"model weights {wpath}: {key} has shape {w.shape}, the architecture needs {tuple(v.shape)}")
                v.assign(w)
    except OSError as e:
        raise TezipError(f"model weights {wpath} are not a readable HDF5 file ({e})") from None
    doc["digest"] = model_digest(architecture(prednet), _weights_by_path(prednet))
    return prednet, doc


NO_MODEL = "none"  # MODEL_DIR for compression without a model (prediction from decoded frames only)


def is_no_model(model_dir):
    """Whether MODEL_DIR is the keyword `none` (no model): the string itself only, as is_default_model."""
    return isinstance(model_dir, str) and model_dir == NO_MODEL


def expected_weight_shapes(arch):
    """{path: shape} of every weight a PredNet of this architecture has (as Keras keeps them)."""
    stack = [int(s) for s in arch["stack_sizes"]]
    R = [int(s) for s in (arch.get("R_stack_sizes") or stack)]
    n = len(stack)
    shapes = {}
    for l in range(n):
        k = int(arch["R_filt_sizes"][l])
        in_ch = R[l] + 2 * stack[l] + (R[l + 1] if l < n - 1 else 0)
        if l == 0 and arch.get(FRAME_INPUT_KEYS[0]) is not None:
            in_ch += int(arch.get(SKIP_FRAMES_KEY, 2)) * stack[0]
        shapes[f"lstm_{l}/kernel"], shapes[f"lstm_{l}/bias"] = (k, k, in_ch, 4 * R[l]), (4 * R[l],)
        k = int(arch["Ahat_filt_sizes"][l])
        shapes[f"ahat_{l}/kernel"], shapes[f"ahat_{l}/bias"] = (k, k, R[l], stack[l]), (stack[l],)
        if l < n - 1:
            k = int(arch["A_filt_sizes"][l])
            shapes[f"a_{l}/kernel"], shapes[f"a_{l}/bias"] = (k, k, 2 * stack[l], stack[l + 1]), (stack[l + 1],)
    k = int(arch.get("skip_filt_size", 0))
    if k:
        n_frames = int(arch.get(SKIP_FRAMES_KEY, 2))
        shapes["skip/kernel"], shapes["skip/bias"] = (k, k, n_frames * stack[0], stack[0]), (stack[0],)
    return shapes


_loaded_weights = {}


def load_weights(model_dir):
    """A model folder's architecture and weights for the reference kernel (prednet/reference.py),
    read with h5py alone: no Keras or TensorFlow. Returns (ReferenceWeights, doc), doc["digest"]
    computed from what was read, as load_model computes it. Checked: every weight present with
    the shape the architecture needs."""
    import h5py

    from prednet.reference import ReferenceWeights

    model_dir = resolve_model_dir(model_dir)
    key = (str(model_dir.resolve()), _stamp(model_dir / MODEL_JSON), _stamp(model_dir / WEIGHTS_FILE))
    if key in _loaded_weights:
        weights, doc = _loaded_weights[key]
        return weights, dict(doc)
    doc = read_model_json(model_dir)
    arch = doc["architecture"]
    try:
        shapes = expected_weight_shapes(arch)
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise TezipError(f"model file {model_dir / MODEL_JSON} describes an invalid architecture ({e})") from None
    wpath = model_dir / WEIGHTS_FILE
    if not wpath.is_file():
        raise TezipError(f"model file {wpath} is missing")
    weights = {}
    try:
        with h5py.File(wpath, "r") as f:
            for path, shape in shapes.items():
                if path not in f:
                    raise TezipError(f"model weights {wpath} lack {path}: they belong to another architecture")
                w = np.asarray(f[path][()], np.float32)
                if tuple(w.shape) != shape:
                    raise TezipError(f"model weights {wpath}: {path} has shape {w.shape}, the architecture needs {shape}")
                weights[path] = w
    except OSError as e:
        raise TezipError(f"model weights {wpath} are not a readable HDF5 file ({e})") from None
    try:
        reference = ReferenceWeights(arch, weights)
    except (ValueError, TypeError, KeyError) as e:  # a value of the wrong kind (null, a list) in the description
        raise TezipError(f"model {model_dir}: {e}") from None
    recorded, doc["digest"] = doc.get("digest"), model_digest(arch, weights)
    if recorded is not None and recorded != doc["digest"]:
        # Both files are written together; weights from another model (same architecture) would be
        # used under this description (its training record, its name in archives) without a word.
        raise TezipError(f"model {model_dir}: its weights ({WEIGHTS_FILE}) are not the ones {MODEL_JSON} describes "
                         f"(digest {doc['digest'][:12]}, recorded {str(recorded)[:12]}): the two files come from "
                         "different models")
    _loaded_weights.clear()
    _loaded_weights[key] = (reference, doc)
    return reference, dict(doc)
