"""A learned refinement of the atlas region, trained on the user's own atlas folder.

The atlas path (:mod:`bmeviz.region_atlas`) carries drawn regions of other patients over
by registration; its border is where the registration put it, not where this patient's
cortex is. A :class:`Refiner` redraws that border within ``band_mm`` of it, with one of two
models (``model``):

- ``'unet'`` (the default; :mod:`bmeviz.region_unet`, needs PyTorch): a small 2D U-Net over
  the T1 (the slice and its neighbours), the atlas probability and the signed distance to the
  atlas region. Measured on the 7 SIJ scans, leave-one-out with the refiner trained without the
  scan (``docs/region.md``): mean Dice 0.909 against 0.72 for the atlas region it starts from
  (0.883 with 600 training steps instead of 1200, 0.897 before the fusion counted each atlas only
  where its scan reaches and before ``unet_smooth_mm``). Training takes about 3 min after the
  outlines on 2 cores; applying it about 1.5 s.
- ``'boosting'`` (scikit-learn only): a gradient-boosted voxel classifier
  (``HistGradientBoostingClassifier``) over the T1 relative to the marrow under the atlas
  region (smoothed at 1.8 and 4.8 mm, and scikit-image's multiscale intensity, edge and texture
  features at ``sigma_mm``), the atlas probability and the signed distance. A second stage
  (auto-context, ``stages``) classifies the band again with the first stage's probability as
  context, trained on out-of-fold first-stage maps. Each stage classifies every
  ``predict_step``-th band voxel in-plane and interpolates between them. Measured the same way:
  mean Dice 0.819 (stage 1 alone 0.804); about 4 s to apply.

It learns the drawing rule of the folder it is trained on: :func:`train_refiner` outlines
each atlas from the others (the same atlas path, with its automatic clicks), so the
model sees the atlas probability exactly as it will look on a new scan, with the
drawn region as the answer. No model is shipped: the training data are the user's.

Training on 6 SIJ atlases takes about 3.5 minutes on 2 cores for the U-Net (one atlas outline
per atlas, about 2 s each, then the fit; the boosting model about as long), more with its check.

A refiner file is a pickle (``joblib``): load only files you trained yourself.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import BmevizWarning, ParameterError, warn
from .volume import Volume

__all__ = ["REFINE_PARAMS", "UNET_ATLAS_PARAMS", "Refiner", "train_refiner", "load_refiner"]

FORMAT = 2  # 2: a list of stage classifiers (auto-context); 1 (round 4): one classifier, still read

#: Tunable parameters of the refiner (stored in the file; see the module docstring).
REFINE_PARAMS: dict[str, Any] = {
    "band_mm": 10.0,  # voxels within this distance of the atlas region's border are reclassified (20: no gain)
    "samples": 60000,  # training voxels drawn per atlas, in its band (150000: the same Dice, 3x the time)
    "iterations": 200,  # boosting iterations
    "leaves": 31,  # leaves per tree
    "sigma_mm": (0.6, 4.8),  # scikit-image multiscale features: smallest and largest scale ...
    "num_sigma": 4,  # ... and how many scales
    "smooth_mm": 0.6,  # the classifier's probability smoothed in-plane (slices: a third as much, in voxels)
    "threshold": 0.5,  # refined region: smoothed probability >= this
    "prior_threshold": 0.35,  # the atlas region whose border is redrawn (the atlas path's threshold)
    "stages": "auto",  # auto-context: stage 2 also sees stage 1's probability, smoothed, on neighbour slices and
    # as a region (signed distance, holes filled); trained on out-of-fold stage-1 maps. 1: the round-4 refiner.
    # auto: 2 with at least AUTO_TWO_STAGES atlases, else 1 (the out-of-fold maps of a small folder come from too
    # few atlases: with 3, 1013 went 0.767 -> 0.761, docs/region.md)
    "predict_step": 2,  # the classifier runs on every 2nd voxel of the band in-plane, its probability linearly
    # interpolated between: the refine step 4x faster (docs/region.md). 1: every voxel (files of round 5 and before)
    "train_seeds": None,  # training: each atlas outlined once per registration seed given here (several: more
    # examples of how the atlas path errs); None: once, with the atlas path's seeds. [1, 2] on the 7 SIJ scans,
    # leave-one-out: mean Dice 0.822 against 0.819, for twice the training (docs/region.md)
    "keep_core": "auto",  # where the atlases agree this much, the region stays, whatever the T1 says: BME is dark on
    # T1 and the boosting classifier, which learned bright marrow, cut lesions at the joint. End to end on the 4 SIJ scans
    # with readers (bmeviz validate, 10 users): seeded 0.40 -> 0.42, automatic reference 0.40 -> 0.43, for a
    # region Dice of 0.804 against 0.805; at 0.5: seeded 0.43 but region-only 0.29 (docs/region.md). 1: off.
    # auto: 0.8 for the boosting model, off for the U-Net (with it, 0.8 lost 0.006 region Dice and nothing end to end)
    "model": "unet",  # unet: a small 2D U-Net (bmeviz.region_unet, needs PyTorch): 7 SIJ scans leave-one-out, mean
    # Dice 0.883-0.89 against 0.82 for boosting: gradient-boosted voxels over handcrafted features, with stages
    "unet_pixel_mm": 1.2,  # the U-Net sees the scan at about this in-plane pixel size (SIJ 0.6 mm: 2x2 means)
    "unet_width": 16,  # features at full size (doubled per level)
    "unet_depth": 3,  # poolings
    "unet_iterations": 1200,  # training steps (0.14-0.2 s each on 2 cores). 7 SIJ scans, honest leave-one-out: mean
    # Dice 0.897 against 0.883 with 600 (every scan up, 1234 0.810 -> 0.839), for twice the training (docs/region.md)
    "unet_batch": 16,  # crops per step
    "unet_crop_mm": 77.0,  # side of the training crops, centred in the border band
    "unet_lr": 0.002,  # the peak learning rate (one-cycle schedule, AdamW)
    "unet_threads": 2,  # PyTorch threads (fixed: the weights and the region depend on it)
    "unet_flip": True,  # prediction: the mean of each slice and its mirror image
    "unet_smooth_mm": 2.5,  # prediction: the net's probability smoothed across slices (Gaussian sigma, mm; the net
    # sees a slice and its two neighbours, this ties the slices together). 7 SIJ scans (3.3-mm slices), the
    # probabilities of the honest leave-one-out: mean Dice +0.002, every scan up (1001 0.897 -> 0.901); 0: off
    "unet_seed": 0,  # the seed of the initial weights and of the crops (another seed: another, equally good net)
}


#: The atlas path a U-Net refiner is trained on, and then applied after (stored in its file): without the
#: demons stage. The net redraws the border the demons would have moved, and does as well from the affine
#: registration alone (7 SIJ scans, honest leave-one-out: mean Dice 0.890 against 0.888 after demons; the
#: atlas region itself drops from 0.756 to 0.702), for about 4 s less per outline (docs/region.md).
UNET_ATLAS_PARAMS: dict[str, Any] = {"demons": False}

#: ``stages='auto'`` trains a second stage from this many atlases on (see REFINE_PARAMS).
AUTO_TWO_STAGES = 6


def _whole(value, name: str, alternative: str = "") -> int:
    """``value`` if it is a whole number from 1, else a ParameterError naming the parameter ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ParameterError(f"{name} must be {alternative}a whole number from 1; got {value!r}")
    return value


def _step(p: dict) -> int:
    """``predict_step`` checked (absent: 1, every voxel)."""
    return _whole(p.get("predict_step", 1), "predict_step")


def _stages(value, n_atlases: int) -> int:
    """The number of stages for ``value`` (a whole number >= 1, or 'auto') and a folder of ``n_atlases``."""
    if value == "auto":
        return 2 if n_atlases >= AUTO_TWO_STAGES else 1
    return _whole(value, "stages", "'auto' or ")


def _grid(shape, step: int) -> np.ndarray:
    """Every ``step``-th voxel in-plane (bool; every slice)."""
    g = np.zeros(shape, bool)
    g[:, ::step, ::step] = True
    return g


def _normalised(image: np.ndarray, fused: np.ndarray) -> np.ndarray:
    """The T1 relative to the marrow under the atlas region (its median where ``fused`` >= 0.5)."""
    x = np.nan_to_num(np.asarray(image, np.float32))
    core = np.asarray(fused) >= 0.5
    ref = float(np.median(x[core])) if core.any() else float(np.percentile(x, 99))
    return x / (ref if ref > 0 else 1.0)


def _signed(fused: np.ndarray, spacing, p: dict) -> np.ndarray:
    """The signed distance (mm, inside > 0) to the atlas region (``fused >= prior_threshold``):
    inside, to the nearest voxel outside it; outside, to the nearest voxel in it.

    With SimpleITK (the atlas path needs it), by Maurer's exact transform: on an SIJ scan 0.2 s
    against 0.6-0.7 s for SciPy's, and equal to it to 1e-4 mm."""
    prior = np.asarray(fused) >= float(p["prior_threshold"])
    try:
        import SimpleITK as sitk
    except ImportError:
        sitk = None
    if sitk is None or prior.ndim != 3:
        from scipy import ndimage as ndi

        return (ndi.distance_transform_edt(prior, sampling=spacing)
                - ndi.distance_transform_edt(~prior, sampling=spacing)).astype(np.float32)

    def to(obj: np.ndarray) -> np.ndarray:  # per voxel off obj, the distance (mm) to the nearest voxel of obj
        img = sitk.GetImageFromArray(obj.astype(np.uint8))
        img.SetSpacing([float(v) for v in spacing[::-1]])
        d = sitk.SignedMaurerDistanceMap(img, insideIsPositive=False, squaredDistance=False, useImageSpacing=True)
        return np.maximum(sitk.GetArrayFromImage(d), 0.0).astype(np.float32)

    if not prior.any() or prior.all():  # no border: no distance to it
        return np.zeros(prior.shape, np.float32)
    return np.where(prior, to(~prior), -to(prior))


def _core(p: dict) -> float:
    """The ``keep_core`` level ('auto': 0.8 for the boosting model, off (above 1) for the U-Net)."""
    if p.get("keep_core") == "auto":
        return 0.8 if p.get("model", "boosting") == "boosting" else 2.0
    return float(p["keep_core"])


def _features(image: np.ndarray, spacing, fused: np.ndarray, p: dict,
              step: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Feature rows of the band voxels on the in-plane grid of ``step`` (all band voxels: 1), those
    voxels (bool) and the signed distance (mm, inside > 0) to the atlas region."""
    from scipy import ndimage as ndi
    from skimage.feature import multiscale_basic_features

    fused = np.asarray(fused, np.float32)
    x, sd = _normalised(image, fused), _signed(fused, spacing, p)
    band = np.abs(sd) <= float(p["band_mm"])
    if step > 1:
        band &= _grid(band.shape, step)
    px = float(np.mean(spacing[1:]))
    g1 = ndi.gaussian_filter(x, (0.5, 1.8 / px, 1.8 / px))
    g2 = ndi.gaussian_filter(x, (1.0, 4.8 / px, 4.8 / px))
    pg = ndi.gaussian_filter(fused, (0.5, 1.8 / px, 1.8 / px))
    lo, hi = (float(s) / px for s in p["sigma_mm"])
    rows = []
    for z in np.flatnonzero(band.any(axis=(1, 2))):
        m = band[z]
        f = multiscale_basic_features(x[z], sigma_min=lo, sigma_max=hi, num_sigma=int(p["num_sigma"]))
        extra = np.stack([x[z][m], g1[z][m], g2[z][m], fused[z][m], pg[z][m], sd[z][m]], -1)
        rows.append(np.concatenate([f[m].astype(np.float32), extra], -1))
    n_feat = 6 + 4 * int(p["num_sigma"])
    X = np.concatenate(rows) if rows else np.zeros((0, n_feat), np.float32)
    return X, band, sd


def _context(prob: np.ndarray, band: np.ndarray, spacing) -> np.ndarray:
    """Auto-context rows of the voxels ``band`` from the previous stage's probability map: it smoothed
    at 1.2, 3 and 7 mm in-plane, the slices above and below, the signed distance (mm) to its
    region (>= 0.5) and that region with its holes filled per slice."""
    from scipy import ndimage as ndi

    px = float(np.mean(spacing[1:]))
    prob = np.asarray(prob, np.float32)
    m = prob >= 0.5
    cols = [ndi.gaussian_filter(prob, (0.5, 1.2 / px, 1.2 / px)), ndi.gaussian_filter(prob, (0.7, 3 / px, 3 / px)),
            ndi.gaussian_filter(prob, (1.0, 7 / px, 7 / px)),
            np.concatenate([prob[:1], prob[:-1]]), np.concatenate([prob[1:], prob[-1:]]),
            ndi.distance_transform_edt(m, sampling=spacing) - ndi.distance_transform_edt(~m, sampling=spacing),
            np.stack([ndi.binary_fill_holes(sl) for sl in m])]
    return np.stack([np.asarray(c, np.float32)[band] for c in cols], -1)


def _upsample(coarse: np.ndarray, shape, step: int) -> np.ndarray:
    """``coarse`` (every ``step``-th voxel in-plane) linearly interpolated to ``shape``."""
    out = coarse
    for axis in (1, 2):
        n_c = coarse.shape[axis]
        pos = np.arange(shape[axis], dtype=np.float32) / step
        i0 = np.minimum(pos.astype(int), n_c - 1)
        i1 = np.minimum(i0 + 1, n_c - 1)
        w = np.clip(pos - i0, 0, 1).reshape([-1 if a == axis else 1 for a in range(3)])
        out = np.take(out, i0, axis) * (1 - w) + np.take(out, i1, axis) * w
    return out.astype(np.float32)


def _stage_map(model, X: np.ndarray, pts: np.ndarray, sd: np.ndarray, p: dict) -> np.ndarray:
    """A stage's probability map: the classifier at the voxels ``pts``, interpolated between them
    in the band (``predict_step`` > 1), and the atlas region outside the band."""
    prob = (sd > 0).astype(np.float32)
    if len(X):
        prob[pts] = model.predict_proba(X)[:, 1]
    step = int(p.get("predict_step", 1))
    if step > 1:
        band = np.abs(sd) <= float(p["band_mm"])
        prob[band] = _upsample(prob[:, ::step, ::step], prob.shape, step)[band]
    return prob


def _predict(models: list, X: np.ndarray, pts: np.ndarray, sd: np.ndarray, spacing, p: dict) -> np.ndarray:
    """The last stage's probability map; each stage after the first adds the context of the one before
    (the rows ``X`` of the voxels ``pts``, from :func:`_features` with ``p['predict_step']``)."""
    prob = _stage_map(models[0], X, pts, sd, p)
    for model in models[1:]:
        prob = _stage_map(model, np.concatenate([X, _context(prob, pts, spacing)], 1), pts, sd, p)
    return prob


class Refiner:
    """A trained refiner: ``apply(volume, fused)`` redraws the atlas region's border.

    Made by :func:`train_refiner`, kept with :meth:`save`, read with :func:`load_refiner`.
    ``atlases``: the atlas names it learned from; ``validation``: leave-one-out Dice within
    the training folder (atlas region and refined), if it was measured; ``atlas_params``: the
    overrides of :data:`~bmeviz.region_atlas.ATLAS_PARAMS` its training outlines were made with,
    which the atlas path then uses before applying it (a U-Net: no demons; files before them: none).
    """

    def __init__(self, model, params: dict, atlases: list[str], validation: dict | None = None,
                 path: str | None = None, versions: dict | None = None, atlas_params: dict | None = None):
        # model: the list of stage classifiers (one classifier: a one-stage refiner)
        self.models = list(model) if isinstance(model, (list, tuple)) else [model]
        self.params, self.atlases = dict(params), list(atlases)
        self.validation, self.path, self.versions = validation, path, versions or _versions()
        self.atlas_params = dict(atlas_params or {})

    def probability(self, volume: Volume, fused: np.ndarray) -> np.ndarray:
        """The refined probability of being in the region (float32, smoothed)."""
        from scipy import ndimage as ndi

        if self.params.get("model") == "unet":
            from .region_unet import net_input, unet_probability

            X, sd = net_input(volume.array, volume.spacing, fused, self.params)
            prob = unet_probability(self.models[0], X, volume.shape, volume.spacing, self.params)
            prob = np.where(np.abs(sd) <= float(self.params["band_mm"]), prob, (sd > 0).astype(np.float32))
            s = float(self.params.get("unet_smooth_mm", 0.0)) / float(volume.spacing[0])  # files before: none
            return ndi.gaussian_filter1d(prob, s, axis=0).astype(np.float32) if s > 0 else prob
        X, pts, sd = _features(volume.array, volume.spacing, fused, self.params, _step(self.params))
        prob = _predict(self.models, X, pts, sd, volume.spacing, self.params)
        s = float(self.params["smooth_mm"]) / float(np.mean(volume.spacing[1:]))
        return ndi.gaussian_filter(prob, (s / 3, s, s)) if s > 0 else prob

    def apply(self, volume: Volume, fused: np.ndarray) -> np.ndarray:
        """The refined region (bool, the grid of ``volume``) from the fused atlas probability:
        the classifier's, plus the atlas core (``fused >= keep_core``)."""
        out = self.probability(volume, fused) >= float(self.params["threshold"])
        return out | (np.asarray(fused) >= _core(self.params))

    @property
    def model(self) -> str:
        """``'unet'`` or ``'boosting'``."""
        return str(self.params.get("model", "boosting"))

    def describe(self) -> dict:
        return {"file": self.path, "model": self.model, "atlases": self.atlases,
                "stages": 1 if self.model == "unet" else len(self.models), "validation": self.validation,
                "atlas_params": self.atlas_params}

    def save(self, path: str | Path) -> Path:
        """Write the refiner to ``path`` (atomically; ``.joblib`` by convention)."""
        import joblib

        from .io._atomic import atomic_path

        with atomic_path(path) as tmp:
            joblib.dump({"format": FORMAT, "model": self.models, "params": self.params, "atlases": self.atlases,
                         "validation": self.validation, "versions": self.versions,
                         "atlas_params": self.atlas_params}, tmp)
        self.path = str(Path(path).resolve())
        return Path(path)

    def __repr__(self) -> str:
        return f"Refiner(model={self.model!r}, atlases={self.atlases}, validation={self.validation})"


def _versions() -> dict:
    import sklearn

    from . import __version__

    return {"bmeviz": __version__, "scikit-learn": sklearn.__version__}


def _require_sklearn():
    try:
        from sklearn.ensemble import HistGradientBoostingClassifier
    except ImportError:  # pragma: no cover - scikit-learn comes with bmeviz[region]
        raise ParameterError("the refiner needs scikit-learn: pip install 'bmeviz[region]'") from None
    return HistGradientBoostingClassifier


_LOADED: dict[tuple, Refiner] = {}


def load_refiner(path: str | Path) -> Refiner:
    """Read a refiner written by :meth:`Refiner.save` (a bad file: a ParameterError naming it)."""
    path = Path(path)
    if not path.is_file():
        raise ParameterError(f"refiner {path} does not exist (make one with: bmeviz region-refiner --atlas DIR "
                             f"--out {path.name})")
    key = (str(path.resolve()), path.stat().st_mtime_ns, path.stat().st_size)
    if key in _LOADED:
        return _LOADED[key]
    try:
        import joblib
    except ImportError:  # pragma: no cover - joblib comes with scikit-learn (bmeviz[region])
        raise ParameterError("reading a refiner needs joblib, which comes with scikit-learn: "
                             "pip install 'bmeviz[region]'") from None
    try:
        d = joblib.load(path)
    except ModuleNotFoundError as exc:  # a boosting file without scikit-learn: say how to get it
        if "sklearn" in str(exc):
            _require_sklearn()
        raise ParameterError(f"refiner {path} cannot be read: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad refiner file
        raise ParameterError(f"refiner {path} cannot be read ({type(exc).__name__}: {str(exc)[:200]}): it is not a "
                             "file written by bmeviz region-refiner, or it is damaged") from None
    if not isinstance(d, dict) or d.get("format") not in (1, FORMAT) or "model" not in d:
        raise ParameterError(f"refiner {path} is not a bmeviz refiner of format {FORMAT}: train it again with "
                             "bmeviz region-refiner")
    versions = d.get("versions") or {}
    # The U-Net's weights are plain arrays: its file needs no scikit-learn (0.7 s of imports saved per CLI call)
    boosting = d["params"].get("model", "boosting") == "boosting"
    now = _versions() if boosting else {}
    if boosting and versions.get("scikit-learn") != now["scikit-learn"]:
        warn(f"refiner {path} was trained with scikit-learn {versions.get('scikit-learn')}, this is "
             f"{now['scikit-learn']}: if the region looks wrong, train it again")
    # an older file predicts as it was trained: every voxel, boosting
    params = {**REFINE_PARAMS, "predict_step": 1, "model": "boosting", **d["params"]}
    ref = Refiner(d["model"], params, d.get("atlases", []), d.get("validation"), str(path.resolve()), versions,
                  d.get("atlas_params"))  # older files: outlined with the atlas path's defaults
    if len(_LOADED) > 8:
        _LOADED.clear()
    _LOADED[key] = ref
    return ref


def as_refiner(refine: Any) -> Refiner:
    """A Refiner, or its file path."""
    if isinstance(refine, Refiner):
        return refine
    if isinstance(refine, (str, Path)):
        return load_refiner(refine)
    raise ParameterError(f"refine must be a bmeviz Refiner or the path of its file; got {type(refine).__name__}")


def train_refiner(atlas: Any, *, exclude: tuple | list = (), params: dict | None = None,
                  atlas_params: dict | None = None, validate: bool = True,
                  progress: Callable[[str], None] | None = None) -> Refiner:
    """Train a refiner on an atlas folder (or manifest, or list; see :func:`~bmeviz.region_atlas.load_atlases`).

    Each atlas is outlined from the others by the atlas path (with its automatic clicks:
    the deepest bright point of each bone), which gives the atlas probability a new scan
    would get; its border band, labelled by its drawn region, trains the model
    (``params={"model": "boosting"}`` for the boosting model, without PyTorch;
    ``params={"train_seeds": [1, 2]}``: each atlas outlined once per registration seed, twice
    the outlines). ``exclude``: atlas names left out (a scan you want to test on). Boosting with
    ``stages`` 2 (``'auto'``, with 6 atlases or more): one first stage per left-out atlas gives
    the maps the second stage learns from. ``validate``: also train one model per left-out
    atlas (for boosting, its last stage) and report the leave-one-out Dice in the folder (atlas
    region vs refined, both before the clicks' components and hole filling). It is slightly
    optimistic: the left-out atlas's region helped outline the others.

    Raises
    ------
    ParameterError
        Fewer than 3 atlases, unknown parameters, no scikit-learn or SimpleITK, no PyTorch
        for the U-Net (the message says how to install it).
    """
    from .metrics import dice
    from .region_atlas import atlas_clicks, atlas_probability, load_atlases

    hgb = _require_sklearn()
    p = dict(REFINE_PARAMS)
    unknown = set(params or {}) - set(REFINE_PARAMS)
    if unknown:
        raise ParameterError(f"unknown refiner parameter(s) {', '.join(sorted(unknown))}; known: "
                             f"{', '.join(REFINE_PARAMS)}")
    p.update(params or {})
    _stages(p["stages"], 0)  # a bad value is refused before the outlines
    _step(p)
    if p["model"] not in ("unet", "boosting"):
        raise ParameterError(f"model must be 'unet' or 'boosting'; got {p['model']!r}")
    unet = p["model"] == "unet"
    if unet:
        from .region_unet import _down, factor, net_input, require_torch, train_unet

        torch_version = require_torch().__version__
        for k in ("unet_width", "unet_depth", "unet_iterations", "unet_batch", "unet_threads"):
            _whole(p[k], k)
        for k in ("unet_pixel_mm", "unet_crop_mm", "unet_lr"):
            if isinstance(p[k], bool) or not isinstance(p[k], (int, float)) or not p[k] > 0:
                raise ParameterError(f"{k} must be a positive number; got {p[k]!r}")
        v = p["unet_smooth_mm"]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
            raise ParameterError(f"unet_smooth_mm must be a number from 0 (mm; 0: no smoothing); got {v!r}")
    ts = p["train_seeds"]
    if ts is not None and (isinstance(ts, (str, bytes)) or not hasattr(ts, "__len__") or not len(ts)
                           or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in ts)):
        raise ParameterError(f"train_seeds must be None or a list of whole numbers (registration seeds); got {ts!r}")
    say = progress or (lambda msg: None)
    atlases = [a for a in load_atlases(atlas) if a.name not in {str(e) for e in exclude}]
    if len(atlases) < 3:
        raise ParameterError(f"a refiner needs at least 3 atlases (each is outlined from the others); got "
                             f"{len(atlases)}")
    rng = np.random.default_rng(0)
    atlas_params = {**(UNET_ATLAS_PARAMS if unet else {}), **(atlas_params or {})}  # stored: used again with it
    # one outline of each atlas per training seed (several: more registrations to learn from, the same atlases)
    seeds = [None] if p["train_seeds"] is None else [int(v) for v in p["train_seeds"]]
    owner, Xs, ys, kept, picks = [], [], [], [], []  # per outline: its atlas's index, rows, labels, map, voxels
    for i, a in enumerate(atlases):
        t = time.perf_counter()
        clicks = atlas_clicks(a.image, a.region)
        for seed in seeds:
            ap = dict(atlas_params) if seed is None else {**atlas_params, "seeds": (seed,)}
            with warnings.catch_warnings():  # a disagreement is part of what the refiner must learn; said below
                warnings.simplefilter("ignore", BmevizWarning)
                fused, info = atlas_probability(a.image, clicks, [b for b in atlases if b is not a], params=ap)
            owner.append(i)
            kept.append(fused)
            if unet:  # the net's channels, drawn region and band, on its grid
                X, sd = net_input(a.image.array, a.image.spacing, fused, p)
                f = factor(a.image.spacing, p)
                Xs.append(X)
                ys.append(_down(a.region, f))
                picks.append(_down(np.abs(sd) <= float(p["band_mm"]), f) > 0)
                continue
            X, band, sd = _features(a.image.array, a.image.spacing, fused, p)
            y = a.region[band]
            pick = np.sort(rng.choice(len(y), min(int(p["samples"]), len(y)), replace=False))
            Xs.append(X[pick])
            ys.append(y[pick])
            picks.append(pick)
        agree = "" if info.get("agreement") is None else f"; the atlases fused agree at {info['agreement']:.2f}"
        per_seed = f" once per seed ({', '.join(map(str, seeds))})" if seeds != [None] else ""
        say(f"atlas {a.name} ({i + 1}/{len(atlases)}) outlined from the others{per_seed} in "
            f"{time.perf_counter() - t:.1f} s{agree}")

    def fit(rows: list, idx: list[int]):
        from threadpoolctl import threadpool_limits

        clf = hgb(max_iter=int(p["iterations"]), max_leaf_nodes=int(p["leaves"]), learning_rate=0.1,
                  early_stopping=False, random_state=0)
        # One OpenMP thread: fitting has thousands of short parallel steps, and beside another busy process
        # (a second job, a test worker) their spinning threads slowed a 4 s fit past minutes; alone it is 2x slower
        with threadpool_limits(limits=1, user_api="openmp"):
            return clf.fit(np.concatenate([rows[k] for k in idx]), np.concatenate([ys[k] for k in idx]))

    # Stage k > 1 learns from the context of stage k-1's out-of-fold maps: for each atlas, the map of a
    # stage trained without it (all its outlines left out), as a new scan will get it. The same left-out
    # models make the check.
    n, m = len(atlases), len(owner)
    n_stages = p["stages"] = 1 if unet else _stages(p["stages"], n)
    models, loo, ctx = [], [[] for _ in atlases], [None] * m
    if unet:  # one net on every outline; with validate, one more per left-out atlas
        px = float(np.mean([np.mean(atlases[owner[k]].image.spacing[1:]) * factor(atlases[owner[k]].image.spacing, p)
                            for k in range(m)]))

        def net(idx: list[int], what: str):
            say(f"U-Net ({what}): training on {len(idx)} outline(s)")
            return train_unet([(Xs[k], ys[k], picks[k]) for k in idx], px, p, say)

        models.append(net(list(range(m)), "all atlases"))
        for i in range(n) if validate else ():
            loo[i].append(net([k for k in range(m) if owner[k] != i], f"without {atlases[i].name}, for the check"))
    for stage in range(0 if unet else n_stages):
        rows = [Xs[k] if stage == 0 else np.concatenate([Xs[k], ctx[k]], 1) for k in range(m)]
        models.append(fit(rows, list(range(m))))
        last = stage == n_stages - 1
        if last and not validate:
            break
        for i in range(n):
            loo[i].append(fit(rows, [k for k in range(m) if owner[k] != i]))
        for k in range(m) if not last else ():  # each outline's map from its atlas's left-out stages so far
            img = atlases[owner[k]].image
            X, pts, sd = _features(img.array, img.spacing, kept[k], p, _step(p))
            prob = _predict(loo[owner[k]], X, pts, sd, img.spacing, p)  # as a new scan gets it
            ctx[k] = _context(prob, np.abs(sd) <= float(p["band_mm"]), img.spacing)[picks[k]]
        say(f"stage {stage + 1} of {n_stages} trained")

    validation = None
    if validate:
        per = []
        for i, a in enumerate(atlases):
            first = kept[owner.index(i)]  # its first outline
            prior = first >= float(p["prior_threshold"])
            per.append({"atlas": a.name, "atlas_dice": round(dice(prior, a.region), 4),
                        "refined_dice": round(dice(Refiner(loo[i], p, []).apply(a.image, first), a.region), 4)})
            say(f"validation: {a.name} atlas {per[-1]['atlas_dice']:.3f} -> refined {per[-1]['refined_dice']:.3f}")
        validation = {"per_atlas": per,
                      "atlas_dice_mean": round(float(np.mean([r["atlas_dice"] for r in per])), 4),
                      "refined_dice_mean": round(float(np.mean([r["refined_dice"] for r in per])), 4)}
    versions = {**_versions(), "torch": torch_version} if unet else None
    return Refiner(models, p, [a.name for a in atlases], validation, versions=versions, atlas_params=atlas_params)


# ----------------------------------------------------------------------------- CLI
def add_cli(subparsers, command) -> None:
    """``bmeviz region-refiner --atlas DIR_OR_CSV --out REFINER.joblib [--exclude ID ...]``."""
    p = subparsers.add_parser("region-refiner",
                              help="train the region refiner on an atlas folder (then: bmeviz region --refine)")
    p.add_argument("--atlas", required=True, metavar="DIR_OR_CSV",
                   help="the atlas folder (<id>_T1W.nii.gz + <id>_disease_region.nii.gz) or CSV manifest")
    p.add_argument("--out", required=True, metavar="REFINER.joblib", help="the refiner file (written atomically)")
    p.add_argument("--exclude", action="append", default=[], metavar="ID",
                   help="leave this atlas out (e.g. a scan you will test on); repeatable")
    p.add_argument("--model", choices=("unet", "boosting"), default=None,
                   help="unet (default): a small U-Net, needs PyTorch (pip install 'bmeviz[unet]'); boosting: "
                        "gradient-boosted voxels (scikit-learn only), less accurate")
    p.add_argument("--no-validate", action="store_true",
                   help="skip the leave-one-out check in the folder (one more training per atlas: about 3 min each "
                        "for the U-Net, 15 s for boosting)")
    command("region-refiner")(_cli_train)


def _cli_train(args) -> int:
    import json

    out = Path(args.out)
    t = time.perf_counter()
    ref = train_refiner(args.atlas, exclude=args.exclude, validate=not args.no_validate,
                        params=None if args.model is None else {"model": args.model},
                        progress=lambda msg: print(msg, flush=True))
    ref.save(out)
    print(f"refiner ({ref.model}): trained on {len(ref.atlases)} atlases ({', '.join(ref.atlases)}) in "
          f"{time.perf_counter() - t:.0f} s")
    if ref.validation:
        v = ref.validation
        print(f"leave-one-out in the folder: mean Dice {v['atlas_dice_mean']:.3f} (atlas region) -> "
              f"{v['refined_dice_mean']:.3f} (refined)")
        print(json.dumps(v["per_atlas"]))
    print(f"wrote: {out}  (use it with: bmeviz region T1 --seed-mm=... --atlas {args.atlas} --refine {out} ...)")
    return 0
