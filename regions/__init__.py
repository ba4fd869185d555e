"""Facial regions: face detection, 68-point landmarks, face crops and region masks.

from dffr.regions import segment_image
seg = segment_image(rgb)[0]          # largest face
seg.regions["eyes"]                  # eyes region on black, at crop size
"""

from dffr.regions.crop import Crop, face_crop
from dffr.regions.face_detection import FACE_DETECTORS, FaceDetector, get_face_detector
from dffr.regions.landmarks import BACKENDS, Face, LandmarkBackend, get_backend
from dffr.regions.masks import REGIONS, apply_mask, cut_regions, region_masks
from dffr.regions.segment import Segmentation, detect_faces, segment_face, segment_image

__all__ = [
    "BACKENDS",
    "FACE_DETECTORS",
    "REGIONS",
    "Crop",
    "Face",
    "FaceDetector",
    "LandmarkBackend",
    "Segmentation",
    "apply_mask",
    "cut_regions",
    "detect_faces",
    "face_crop",
    "get_backend",
    "get_face_detector",
    "region_masks",
    "segment_face",
    "segment_image",
]
