"""kinetics-prep's stride-2 layout (odd frames non-reference B frames, even ones I/P, marked in the file) and the
PyAV reader that skips the odd frames when only even ones are wanted, with even clip windows (data.window_align)."""

from __future__ import annotations

import av
import pytest
import torch
from av.video.frame import PictureType

from data_prep.encode import transcode
from data_prep.writer import EncodeSettings
from tests.videos import frame_indices, write_video
from videonorm.data.decoders.pyav import Reader
from videonorm.data.manifest import STRIDE2_LAYOUT
from videonorm.data.sampling import center_clip_indices, multiview_clip_indices, train_clip_indices
from videonorm.data.video import read_clip


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("stride2")
    source = write_video(root / "source.mp4", 60, 64, 48, 25)  # frames spell their index
    out = {}
    for layout in ("stride2", "x264"):
        out[layout] = root / f"{layout}.mp4"
        transcode(source, out[layout], EncodeSettings(short_side=0, gop=16, preset="fast", threads=1, layout=layout))
    return out


def _frame_types(path) -> list[str]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sorted((f.pts, PictureType(f.pict_type).name) for f in container.decode(stream))
    return [name for _, name in frames]


def test_the_layout_alternates_reference_and_non_reference_frames_and_is_marked(files):
    types = _frame_types(files["stride2"])
    assert len(types) == 60 and types[0] == "I" and types[16] == "I"
    assert all(t in ("I", "P") for t in types[0::2])  # every even frame is a reference
    # odd ones are B, but the one before a key frame and the last one (a B frame needs a reference after it)
    assert {types[i] for i in range(1, 59, 2) if (i + 1) % 16} == {"B"}
    with av.open(str(files["stride2"])) as container:
        assert container.metadata.get("comment") == STRIDE2_LAYOUT
    with av.open(str(files["x264"])) as container:
        assert container.metadata.get("comment") is None


def test_nothing_refers_to_the_odd_frames(files):
    """Decoding with the odd frames skipped gives every even frame, pixel for pixel."""
    def decode(skip: bool) -> dict[int, torch.Tensor]:
        with av.open(str(files["stride2"])) as container:
            stream = container.streams.video[0]
            stream.codec_context.skip_frame = "NONREF" if skip else "DEFAULT"
            return {round(f.time * 25): torch.from_numpy(f.to_ndarray(format="rgb24"))
                    for f in container.decode(stream)}

    full, skipped = decode(False), decode(True)
    assert set(range(0, 60, 2)) <= set(skipped) < set(full)
    assert all(torch.equal(skipped[i], full[i]) for i in range(0, 60, 2))


@pytest.mark.parametrize("layout", ["stride2", "x264"])
@pytest.mark.parametrize("wanted", [list(range(10, 40, 2)), list(range(11, 41, 2)), [0, 2, 30, 58], [5, 6, 7]])
def test_the_reader_returns_exactly_the_asked_frames(files, layout, wanted):
    reader = Reader(str(files[layout]), 1)
    assert reader._odd_nonref == (layout == "stride2")
    frames = reader.get(wanted)
    reader.close()
    assert frame_indices(frames) == wanted


def test_a_mark_without_the_layout_falls_back_to_a_full_decode(files, tmp_path):
    # libx264's own layout (B frames at even positions too) carrying the mark by mistake
    marked = tmp_path / "marked.mp4"
    with av.open(str(files["x264"])) as src, av.open(str(marked), "w", format="mp4") as dst:
        dst.metadata["comment"] = STRIDE2_LAYOUT
        stream = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                dst.mux(packet)
    assert any(t == "B" for t in _frame_types(marked)[0::2])  # even B frames: skipping would lose them
    frames, indices = read_clip(marked, lambda n: torch.arange(10, 42, 2), "pyav")
    assert frame_indices(frames) == indices.tolist() == list(range(10, 42, 2))


def test_aligned_windows_start_on_even_frames():
    g = torch.Generator().manual_seed(0)
    starts = {int(train_clip_indices(100, 8, 2, g, align=2)[0]) for _ in range(200)}
    assert starts == set(range(0, 100 - 16 + 1, 2))  # every even start that fits, no odd one
    assert int(center_clip_indices(101, 8, 2, align=2)[0]) == 42  # (101 - 16) // 2 = 42
    assert int(center_clip_indices(103, 8, 2, align=2)[0]) == 42  # 43 rounds down
    clips = multiview_clip_indices(100, 8, 2, 5, align=2)
    assert all(int(c[0]) % 2 == 0 for c in clips) and int(clips[-1][-1]) <= 99
    assert torch.equal(multiview_clip_indices(100, 8, 2, 5), multiview_clip_indices(100, 8, 2, 5, align=1))
