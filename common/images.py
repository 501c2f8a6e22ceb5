"""The inference task's images, the same for every framework, and the check on two real
photographs that proves a framework loaded ResNet-50's weights right.

Images: real CIFAR-10 test images, upsampled to 224 x 224 (bilinear) and preprocessed as Keras's
ResNet50 expects ("caffe": RGB -> BGR, minus the ImageNet mean, no scaling).

Standard library + numpy (1.19+) at import time; Pillow and scikit-image only inside the photo check.
"""
import hashlib
import time

import numpy as np

from .datasets import sources
from .datasets.provenance import note_source
from .datasets.resnet50_weights import imagenet_labels
from .params import IMAGE_SIZE, SEED
from .resnet50 import BN_EPSILON, IMAGENET_CLASSES


# ---------------------------------------------------------------- images

CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)  # ImageNet mean pixel, in BGR order
CHUNK = 64  # images processed at a time (bounds the temporaries)


def preprocess_caffe(rgb):
    """Keras's "caffe" preprocessing: (..., 3) RGB pixels in [0, 255] -> float32 BGR minus the
    ImageNet mean, not scaled."""
    bgr = np.asarray(rgb)[..., ::-1].astype(np.float32)
    bgr -= np.array(CAFFE_MEAN_BGR, dtype=np.float32)
    return bgr


def bilinear_matrix(n_in, n_out):
    """(n_out, n_in) float32 weights of bilinear enlargement with half-pixel centres and clamped
    edges (what Pillow's BILINEAR does when enlarging); rows sum to 1."""
    if n_out < n_in:
        raise ValueError("bilinear_matrix enlarges only (%d -> %d)" % (n_in, n_out))
    centres = np.clip((np.arange(n_out) + 0.5) * (float(n_in) / n_out) - 0.5, 0, n_in - 1)
    low = np.floor(centres).astype(np.int64)
    high = np.minimum(low + 1, n_in - 1)
    frac = centres - low
    matrix = np.zeros((n_out, n_in))
    rows = np.arange(n_out)
    np.add.at(matrix, (rows, low), 1.0 - frac)
    np.add.at(matrix, (rows, high), frac)
    return matrix.astype(np.float32)


def _enlarge_into(out, start, images_nhwc, channel_first):
    """Enlarge (n, h, w, 3) float32 images to out's size, written into out[start:start + n]: two
    large matrix products per chunk (columns, then rows)."""
    n, h, w, _ = images_nhwc.shape
    size = out.shape[2] if channel_first else out.shape[1]
    rows, cols = bilinear_matrix(h, size), bilinear_matrix(w, size).T.copy()
    for s in range(0, n, CHUNK):
        planes = np.ascontiguousarray(images_nhwc[s:s + CHUNK].transpose(0, 3, 1, 2))  # (k, 3, h, w)
        k = len(planes)
        wide = np.dot(planes.reshape(-1, w), cols).reshape(k, 3, h, size)  # (k, 3, h, size)
        big = np.tensordot(wide, rows, axes=([2], [1]))  # (k, 3, size columns, size rows)
        out[start + s:start + s + k] = big.transpose(0, 1, 3, 2) if channel_first else big.transpose(0, 3, 2, 1)


def _empty_batch(n, channel_first):
    shape = (n, 3, IMAGE_SIZE, IMAGE_SIZE) if channel_first else (n, IMAGE_SIZE, IMAGE_SIZE, 3)
    return np.empty(shape, dtype=np.float32)


def inference_images(n_images, channel_first=True, synthetic=False):
    """n_images float32 images ready for the network: (n, 3, 224, 224), or (n, 224, 224, 3) if not
    channel_first, BGR minus the ImageNet mean.

    Real: the first n CIFAR-10 test images (verified), enlarged from 32 x 32 bilinearly (the
    preprocessing is affine per channel and the interpolation weights sum to 1, so it is applied
    before enlarging, on 49 times fewer pixels). synthetic: seeded random 224 x 224 pictures.
    """
    start = time.time()
    n_images = int(n_images)
    out = _empty_batch(n_images, channel_first)
    if synthetic:
        rng = np.random.RandomState(SEED)
        for s in range(0, n_images, CHUNK):
            k = min(CHUNK, n_images - s)
            rgb = np.frombuffer(rng.bytes(k * IMAGE_SIZE * IMAGE_SIZE * 3), np.uint8)
            rgb = rgb.reshape(k, IMAGE_SIZE, IMAGE_SIZE, 3)
            bgr = preprocess_caffe(rgb)
            out[s:s + k] = bgr.transpose(0, 3, 1, 2) if channel_first else bgr
        note_source("inference_images", "synthetic", synthetic=True, images=n_images, seed=SEED)
        sources.say("Inference images: %d synthetic (random, seed %d)" % (n_images, SEED))
        return out
    from .datasets.cifar10 import cifar_uint8_test  # here, so that this module imports without the loaders
    rgb, _ = cifar_uint8_test(limit=n_images)
    if len(rgb) < n_images:
        raise ValueError("asked for %d images, CIFAR-10 has %d test images" % (n_images, len(rgb)))
    _enlarge_into(out, 0, preprocess_caffe(rgb), channel_first)
    note_source("inference_images", "cifar10 test images [0:%d]" % n_images, images=n_images,
                resize="bilinear 32 -> %d" % IMAGE_SIZE, preprocessing="caffe (BGR, minus ImageNet mean)")
    sources.say("Inference images: %d CIFAR-10 test images, enlarged to %d x %d (%.1f s)" % (
        n_images, IMAGE_SIZE, IMAGE_SIZE, time.time() - start))
    return out


# ---------------------------------------------------------------- check on two real photographs

# (scikit-image photo, its ImageNet class, the class's name)
PHOTO_CHECKS = (("chelsea", 285, "Egyptian cat"), ("coffee", 967, "espresso"))


def _resize(rgb, size):
    """The whole photo resized to size x size with Pillow's bilinear filter, as Keras's
    `load_img(path, target_size=(224, 224), interpolation="bilinear")` does."""
    from PIL import Image
    image = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8))
    image = image.resize((size, size), getattr(Image, "Resampling", Image).BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def photo_check_images(channel_first=True):
    """A float32 batch of 2 photographs preprocessed like inference_images: scikit-image's bundled
    `chelsea` (a cat) and `coffee` (a cup of espresso); PHOTO_CHECKS says what each shows."""
    try:
        import skimage
        from skimage import data as skimage_data
    except ImportError:
        raise ImportError("the photo check needs scikit-image (its bundled photos chelsea and coffee) and Pillow")
    photos = np.stack([_resize(getattr(skimage_data, name)(), IMAGE_SIZE) for name, _, _ in PHOTO_CHECKS])
    batch = preprocess_caffe(photos)
    if channel_first:
        batch = np.ascontiguousarray(batch.transpose(0, 3, 1, 2))
    note_source("photo_check", "scikit-image %s data.chelsea(), data.coffee()" % skimage.__version__,
                checksum="sha256:" + hashlib.sha256(photos.tobytes()).hexdigest(),
                resize="whole photo to %d x %d (Pillow bilinear)" % (IMAGE_SIZE, IMAGE_SIZE))
    return batch


def _softmax(scores):
    scores = scores - scores.max(axis=1, keepdims=True)
    e = np.exp(scores)
    return e / e.sum(axis=1, keepdims=True)


def _label(index):
    labels = imagenet_labels()
    if len(labels) == IMAGENET_CLASSES:
        return labels[index].replace("_", " ")
    return dict((c, n) for _, c, n in PHOTO_CHECKS).get(index, "class %d" % index)


def check_photo_predictions(probs_or_logits, top=3):
    """Assert that the classifier's top-1 is Egyptian cat (285) for chelsea and espresso (967) for
    coffee; print each photo's expected class and its top classes. Takes (2, 1000) probabilities or
    logits (softmax is applied unless every row is already a probability distribution). Returns a
    dict for the record."""
    scores = np.asarray(probs_or_logits, dtype=np.float64)
    if scores.shape != (len(PHOTO_CHECKS), IMAGENET_CLASSES):
        raise ValueError("expected scores of shape %s, got %s" % ((len(PHOTO_CHECKS), IMAGENET_CLASSES), scores.shape))
    # (softmax outputs computed in float16 or bfloat16 sum to 1 only within about 1e-2)
    is_probability = scores.min() >= 0 and np.allclose(scores.sum(axis=1), 1.0, atol=1e-2)
    probs = scores if is_probability else _softmax(scores)
    result, failures = {}, []
    for (photo, expected, name), p in zip(PHOTO_CHECKS, probs):
        ranking = np.argsort(-p)[:top]
        print("%-8s expected %s (%d); top %d: %s" % (photo + ":", name, expected, top, ", ".join(
            "%s (%d) %.3f" % (_label(i), i, p[i]) for i in ranking)))
        top1 = int(ranking[0])
        result[photo] = {"expected": expected, "top1": top1, "probability": round(float(p[top1]), 4)}
        if top1 != expected:
            failures.append("%s: top-1 is %s (%d, p=%.3f), expected %s (%d, p=%.3f)" % (
                photo, _label(top1), top1, p[top1], name, expected, p[expected]))
    if failures:
        raise AssertionError("ResNet-50 photo check failed (are the weights loaded into the right "
                             "layers, kernels transposed, BN epsilon %g, input BGR minus mean?): %s" % (
                                 BN_EPSILON, "; ".join(failures)))
    return result
