"""Silent wrong frames in `actionnb.video` (notebook 01): seeks that skip the first frame's SEI, variable frame rates,
display matrices. Every fixture is encoded here with PyAV by a writer that does not use the code under test, and every
check compares `read_clip` with an in-order decode of the whole file.

Run: `OMP_NUM_THREADS=1 python -m pytest -q tests/test_video_reliability.py`."""
import logging
import re
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

import actionnb.video as V
from actionnb.video import VideoDecodeError, decode_all_clip, frame_ids, probe, read_clip, synthetic_frame


# ---------------------------------------------------------------------------------------------------- fixture writers
def encode(path, frames, *, codec='libx264', pix_fmt='yuv420p', rate=25, options=None, pts=None, time_base=None,
           rotation=None, sar=None):
    """Encode the `(H, W, 3)` uint8 arrays `frames` to `path`. `pts` (with `time_base`) sets each frame's timestamp;
    `rotation=(degrees, hflip, vflip)` writes a display matrix (PyAV's `set_display_rotation`); `sar` a pixel aspect."""
    path = Path(path)
    with av.open(str(path), 'w') as c:
        s = c.add_stream(codec, rate=rate)
        h, w = frames[0].shape[:2]
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        if options: s.options = dict(options)
        if time_base is not None: s.codec_context.time_base = time_base
        if rotation is not None: s.set_display_rotation(rotation[0], hflip=rotation[1], vflip=rotation[2])
        if sar is not None: s.codec_context.sample_aspect_ratio = sar
        for i, a in enumerate(frames):
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(a), format='rgb24')
            if pts is not None: f.pts, f.time_base = int(pts[i]), time_base
            for pkt in s.encode(f): c.mux(pkt)
        for pkt in s.encode(): c.mux(pkt)
    return path


def upright(n, w=64, h=48): return [synthetic_frame(i, w, h) for i in range(n)]


def displayed(stored, degrees, hflip, vflip):
    "What a player shows, as PyAV documents `set_display_rotation`: rotate counter-clockwise by `degrees`, then mirror."
    a = np.rot90(stored, degrees // 90, axes=(-3, -2))          # np.rot90 turns counter-clockwise in image coordinates
    if hflip: a = a[..., :, ::-1, :]
    if vflip: a = a[..., ::-1, :, :]
    return np.ascontiguousarray(a)


def stored_for(upright_frame, degrees, hflip, vflip):
    "The frame to store so that the player shows `upright_frame` (inverse of `displayed`)."
    a = upright_frame
    if vflip: a = a[::-1]
    if hflip: a = a[:, ::-1]
    return np.ascontiguousarray(np.rot90(a, -(degrees // 90)))


def in_order(path):
    "The reference: every frame, decoded in order from frame 0 with FFmpeg's defaults, as stored (no rotation)."
    return decode_all_clip(path, np.arange(probe(path).num_frames))


def old_x264(path_new, path_old, build=b'150'):
    """Copy an x264 file, rewriting the encoder's version SEI ('x264 - core 165 ...', in the first frame only) to an
    old build. FFmpeg then applies its workaround for x264 builds < 151 (4:4:4 lossless intra 8x8 prediction) when
    it decodes from frame 0, and not after a seek that skips the first frame: the two decodes differ."""
    data = Path(path_new).read_bytes()
    m = re.search(rb'x264 - core (\d+)', data)
    assert m and data.count(b'x264 - core') == 1
    Path(path_old).write_bytes(data[:m.start(1)] + build + data[m.end(1):])
    return Path(path_old)


@pytest.fixture(scope='module')
def d(tmp_path_factory): return tmp_path_factory.mktemp('video_reliability')


# ------------------------------------------------------------------------------ defect 1: the first frame's SEI
@pytest.fixture(scope='module')
def old_x264_file(d):
    # lossless 4:4:4 High 4:4:4 Predictive, CAVLC: the workaround changes pixels without any decoding error
    new = encode(d / 'x264_new.mp4', upright(48), pix_fmt='yuv444p',
                 options={'qp': '0', 'g': '12', 'x264-params': 'cabac=0'})
    return old_x264(new, d / 'x264_old.mp4')


def test_old_x264_fixture_reproduces_the_issue(old_x264_file):
    "The fixture is honest: a plain seek (no first frame) decodes different pixels than the in-order decode."
    ref = in_order(old_x264_file)
    with av.open(str(old_x264_file)) as c:
        s = c.streams.video[0]
        keys = [i for i, e in enumerate(s.index_entries) if e.is_keyframe]
        k = keys[len(keys) // 2]
        pts = sorted(p.pts for p in c.demux(s) if p.size)
        c.seek(pts[k], stream=s)
        after = [fr for _, fr in zip(range(6), c.decode(s))]               # the keyframe and the 5 frames after it
    assert [fr.pts for fr in after] == pts[k:k + 6]
    differ = [not np.array_equal(fr.to_ndarray(format='rgb24'), ref[k + j].numpy()) for j, fr in enumerate(after)]
    assert any(differ), 'the workaround did not trigger: FFmpeg changed?'
    assert not any(fr.is_corrupt for fr in after)                          # and nothing says so


def test_seek_after_old_x264_sei_matches_in_order_decode(old_x264_file):
    "Defect 1: reads that seek must return the in-order frames (the decoder must see the first frame's SEI)."
    ref = in_order(old_x264_file)
    n, rng = len(ref), np.random.default_rng(1)
    for _ in range(8):
        idx = np.sort(rng.choice(np.arange(13, n), 4, replace=False))     # past the first GOP: read_clip seeks
        x = read_clip(old_x264_file, idx, seek_gap=0)
        assert torch.equal(x, ref[idx]), idx


def _fake_corrupt_after_seek(monkeypatch):
    "Make every frame decoded after a seek report `is_corrupt`, as FFmpeg does on the issue's old-x264 file."
    state = {'seeks': 0, 'after_seek': False}
    seek = V._seek
    def seek_and_mark(c, s, ts):
        state['seeks'] += 1; state['after_seek'] = True
        return seek(c, s, ts)
    monkeypatch.setattr(V, '_seek', seek_and_mark)
    monkeypatch.setattr(V, '_is_corrupt', lambda frame: state['after_seek'] or frame.is_corrupt)
    return state


def test_corrupt_frame_after_seek_falls_back_to_in_order(d, monkeypatch, caplog):
    "Defect 1 (mechanism): a frame flagged corrupt after a seek is never returned; the read is redone in order."
    f = encode(d / 'cfr_g12.mp4', upright(60), options={'g': '12'})
    ref = in_order(f)
    state = _fake_corrupt_after_seek(monkeypatch)
    orig_read = V._read_sorted
    def read_sorted(*a, **k):
        state['after_seek'] = False                                       # each attempt opens the file afresh
        return orig_read(*a, **k)
    monkeypatch.setattr(V, '_read_sorted', read_sorted)
    idx = np.array([50, 3, 30])
    with caplog.at_level(logging.WARNING, logger='actionnb.video'):
        x = read_clip(f, idx, seek_gap=0)
    assert state['seeks'] > 0, 'the read did not seek: the test would prove nothing'
    assert torch.equal(x, ref[idx])
    assert any(str(f) in r.getMessage() and 'corrupt' in r.getMessage() for r in caplog.records), caplog.text


def test_corrupt_frame_in_order_raises(d, monkeypatch):
    "A frame that FFmpeg flags corrupt even in an in-order decode is an error that names the file and the frame."
    f = encode(d / 'cfr_small.mp4', upright(20), options={'g': '5'})
    bad = sorted(p.pts for p in av.open(str(f)).demux(video=0) if p.size)[7]
    monkeypatch.setattr(V, '_is_corrupt', lambda frame: frame.pts == bad)
    read_clip(f, [3, 12])                                                  # frame 7 not requested: fine
    with pytest.raises(VideoDecodeError) as e: read_clip(f, [3, 7, 12])
    assert str(f) in str(e.value) and 'corrupt' in e.value.reason and '7' in e.value.reason


# ------------------------------------------------------------------------------ defect 2: variable frame rate
def vfr_times(n, rng):
    "Frame times in ms: mostly 40 ms apart, with pauses of 0.3-1.5 s (a phone that drops to a low rate in the dark)."
    steps = np.where(rng.random(n) < 0.2, rng.integers(300, 1500, n), 40)
    return np.concatenate([[0], np.cumsum(steps[:-1])])


@pytest.fixture(scope='module')
def vfr_files(d):
    rng, n = np.random.default_rng(5), 80
    t = vfr_times(n, rng)
    tb = Fraction(1, 1000)
    return [encode(d / 'vfr.mp4', upright(n), pts=t, time_base=tb, options={'g': '8'}),
            encode(d / 'vfr.mkv', upright(n), pts=t, time_base=tb, options={'g': '8'}),
            encode(d / 'vfr_mpeg4.mp4', upright(n), codec='mpeg4', pts=t, time_base=tb, options={'g': '8'})]


def test_vfr_seek_miss_that_average_fps_cannot_see(d):
    """Defect 2, the exact trap: frames 0-8 are 47 ms apart, the rest 20 ms (average 42.3 fps). Keyframe 8 is at
    0.376 s, which the average rate maps to frame 0.376 x 42.3 = 15.9 -> 16. A seek aimed at frame 16 (16 / 42.3 =
    0.378 s) lands on keyframe 8, and a landing check that also uses the average rate reads it as frame 16."""
    t = np.concatenate([[0], np.cumsum([47] * 8 + [20] * 71)])
    f = encode(d / 'vfr_trap.mp4', upright(80), pts=t, time_base=Fraction(1, 1000),
               options={'g': '8', 'x264-params': 'scenecut=0'})
    assert probe(f).keyframes == list(range(0, 80, 8))
    ref = in_order(f)
    for idx in ([16, 17], [16], [20, 40, 60], [17, 33, 70]):
        x = read_clip(f, idx, seek_gap=0)
        assert (frame_ids(x) == idx).all(), (idx, frame_ids(x))
        assert torch.equal(x, ref[idx])


def test_vfr_seek_lands_on_right_frames(vfr_files):
    "Defect 2: with uneven frame times, every seek must still return the requested frames."
    rng = np.random.default_rng(2)
    for f in vfr_files:
        ref = in_order(f)
        n = len(ref)
        assert (frame_ids(ref) == np.arange(n)).all()
        for _ in range(12):
            idx = rng.integers(0, n, 6)
            x = read_clip(f, idx, seek_gap=0)
            assert (frame_ids(x) == idx).all(), (f.name, idx, frame_ids(x))
            assert torch.equal(x, ref[idx]), (f.name, idx)


def test_vfr_probe_keyframes(vfr_files):
    "probe's keyframe indices are the decoder's, not timestamps divided by the average frame rate."
    for f in vfr_files:
        with av.open(str(f)) as c: keys = [i for i, fr in enumerate(c.decode(video=0)) if fr.key_frame]
        assert probe(f).keyframes == keys, f.name


# ------------------------------------------------------------------------------ defect 3: display matrix, aspect
ORIENTATIONS = [(0, False, False), (90, False, False), (180, False, False), (-90, False, False),
                (0, True, False), (0, False, True), (90, True, False), (-90, True, False)]


@pytest.mark.parametrize('ext', ['mp4', 'mov', 'mkv'])
@pytest.mark.parametrize('orientation', ORIENTATIONS)
def test_rotation_probe_and_read_clip(d, ext, orientation):
    "Defect 3: `read_clip` returns frames the way a player shows them; `probe` reports the rotation."
    deg, hf, vf = orientation
    up = upright(10)                                                       # what the viewer must see: 64 wide, 48 high
    f = encode(d / f'rot_{deg}_{int(hf)}{int(vf)}.{ext}', [stored_for(a, deg, hf, vf) for a in up],
               rotation=orientation, options={'g': '4'})
    idx = [9, 0, 5, 5]
    x = read_clip(f, idx)
    assert x.shape == (4, 48, 64, 3), x.shape
    assert (frame_ids(x) == idx).all()
    stored = in_order(f)[idx].numpy()
    assert np.array_equal(x.numpy(), displayed(stored, deg, hf, vf))      # exactly the stored pixels, moved
    info = probe(f)
    r = (deg + 180 * vf) % 360                                             # a vertical mirror = a half turn + a horizontal one
    assert (info.rotation, info.mirrored) == (r - 360 if r > 180 else r, hf != vf)
    assert info.display_size == (64, 48) and (info.width, info.height) == stored.shape[2:0:-1]
    y = read_clip(f, idx, apply_rotation=False)
    assert np.array_equal(y.numpy(), stored)


def test_sample_aspect_ratio(d):
    f = encode(d / 'anamorphic.mp4', upright(4), sar=Fraction(4, 3))
    assert probe(f).sample_aspect_ratio == Fraction(4, 3)
    assert probe(encode(d / 'square.mp4', upright(4))).sample_aspect_ratio == Fraction(1, 1)


# ------------------------------------------------------------------------------ property test
def test_read_clip_property_random_indices(d, vfr_files):
    "Random index sets (seeded) over CFR, VFR and rotated files: `read_clip` equals the decode-all reference."
    cfr = [encode(d / 'p_cfr_g12.mp4', upright(90), options={'g': '12'}),
           encode(d / 'p_cfr_g250.mkv', upright(60)),
           encode(d / 'p_cfr_vp9.webm', upright(40), codec='libvpx-vp9', options={'g': '10'})]
    rot = {encode(d / f'p_rot{k}.mp4', [stored_for(a, k, False, False) for a in upright(50)], rotation=(k, False, False),
                  options={'g': '6'}): k for k in (90, -90, 180)}
    rng = np.random.default_rng(0)
    for f in cfr + list(vfr_files) + list(rot):
        ref = in_order(f)
        n = len(ref)
        assert (frame_ids(ref if f not in rot else displayed(ref.numpy(), rot[f], False, False)) == np.arange(n)).all()
        for trial in range(10):
            idx = rng.integers(0, n, int(rng.integers(1, 12)))             # any order, repeats
            gap = [None, 0, 4, 12][trial % 4]
            skip = bool(trial % 3)
            x = read_clip(f, idx, seek_gap=gap, skip_nonref=skip)
            want = ref[idx].numpy()
            if f in rot: want = displayed(want, rot[f], False, False)
            assert np.array_equal(x.numpy(), want), (f.name, idx, gap, skip)
