"""The MARS layout (REACT 2025/2026): discovery and pairing by stem, the protocols' directions, the session-level
appropriate sets. The tests write small files of MARS's format."""
from __future__ import annotations

import random

import numpy as np
import pytest

from reactdiff.data import mars_layout as M


def write_clip(root, split, session, stem, roles=M.ROLES, frames=40):
    for role in roles:
        path = M.MarsClip(session, stem).path(root / split, M.COEFFS_DIR, role)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, np.zeros((frames, 58), np.float32))


@pytest.fixture
def mars(tmp_path):
    for s, n in (("session2", 12), ("session10", 3), ("session0", 1)):
        for i in range(n):
            write_clip(tmp_path, "train", s, f"Camera-2024-06-{21 + i:02d}-103121-103102")
    write_clip(tmp_path, "train", "session2", "Camera-orphan-speaker", roles=("speaker",))
    write_clip(tmp_path, "train", "session10", "Camera-orphan-listener", roles=("listener",))
    return tmp_path


def test_discover_pairs_by_stem_in_session_order_and_rejects_orphans(mars, tmp_path):
    assert M.is_mars(mars, "train") and not M.is_mars(mars, "val")
    clips, rejects = M.discover(mars, "train")
    assert len(clips) == 16
    assert [c.session for c in clips] == ["session0"] + ["session2"] * 12 + ["session10"] * 3  # numeric order
    assert clips[1].stem < clips[2].stem and clips[1].key == f"session2/{clips[1].stem}"
    assert sorted(r["clip"] for r in rejects) == ["session10/Camera-orphan-listener", "session2/Camera-orphan-speaker"]
    assert any("speaker coefficients session2/Camera-orphan-speaker.npy have no listener partner" in r["reason"]
               for r in rejects)
    with pytest.raises(M.MarsLayoutError, match="coefficients.*speaker"):
        M.discover(mars, "val")
    (tmp_path / "test" / M.COEFFS_DIR / "speaker").mkdir(parents=True)
    (tmp_path / "test" / M.COEFFS_DIR / "listener").mkdir(parents=True)
    with pytest.raises(M.MarsLayoutError, match="no clip has coefficients for both roles"):
        M.discover(mars, "test")


def test_protocol_directions(mars):
    clips, _ = M.discover(mars, "train")
    both, one = M.inputs(clips, "react2025"), M.inputs(clips, "react2026")
    assert len(both) == 2 * len(clips) and [r for _, r in both] == ["speaker"] * 16 + ["listener"] * 16
    assert one == [(c, "speaker") for c in clips]
    with pytest.raises(ValueError, match="react2025, react2026"):
        M.inputs(clips, "react2024")


def test_appropriate_sets_are_per_session_seeded_and_order_free(mars):
    clips, _ = M.discover(mars, "train")
    sets = M.appropriate_sets(clips)
    assert len(sets) == 2 * len(clips)
    stems = {s: {c.stem for c in clips if c.session == s} for s in ("session0", "session2", "session10")}
    for c in clips:
        for role in M.ROLES:
            got = sets[(c.key, role)]
            assert got[0] == c.stem and set(got) <= stems[c.session]
            if c.session == "session2":  # 11 others: 9 distinct, never the paired one again
                assert len(got) == 10 and len(set(got)) == 10
            elif c.session == "session10":  # 2 others: drawn with replacement
                assert len(got) == 10 and c.stem not in got[1:]
            else:  # alone in its session: the paired reaction only
                assert got == [c.stem]
    shuffled = clips[:]
    random.Random(0).shuffle(shuffled)
    assert M.appropriate_sets(shuffled) == sets
    assert M.appropriate_sets(clips, seed=7) != sets
    key = (clips[1].key, "speaker")
    assert sets[key] != sets[(clips[1].key, "listener")] or len(stems["session2"]) < 3
