"""The Zarr store: round trip, OME-Zarr interop, completion marker, ids that cannot escape."""

import json

import dask
import dask.array as da
import numpy as np
import pytest
import zarr

import voxelstream as vs
from voxelstream.errors import StoreError
from voxelstream.store import safe_id
from voxelstream.testing import sample_volume


def test_round_trip_keeps_data_geometry_and_meta(tmp_path):
    vol = sample_volume((21, 30, 17))
    vs_store = vol.to_zarr(tmp_path / "s.zarr", "scan-1", chunks=8)
    back = vs.open_store(tmp_path / "s.zarr").open("scan-1")
    np.testing.assert_array_equal(back.data.compute(), vol.data.compute())
    np.testing.assert_allclose(back.affine, vol.affine)
    assert back.meta["modality"] == "TEST"
    assert back.data.chunksize == (1, 8, 8, 8)  # one dask chunk per zarr chunk (channel axis whole)
    assert vs_store.volume_ids() == ["scan-1"]


def test_ome_zarr_reader_sees_scale_and_translation(tmp_path):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    vol = vs.Volume.from_itk_geometry(da.zeros((5, 6, 7), dtype=np.int16), spacing=(2.5, 0.7, 0.8), origin_xyz=(-10.0, 20.0, -300.0))
    store = vol.to_zarr(tmp_path / "s.zarr", "v")
    node = next(iter(Reader(parse_url(str(store.path / store.image_path("v"))))()))
    (scale, trans), = node.metadata["coordinateTransformations"]
    assert scale == {"type": "scale", "scale": [1.0, 2.5, 0.7, 0.8]}
    # OME axes are (c, z, y, x): the translation is the LPS origin reversed
    assert trans == {"type": "translation", "translation": [0.0, -300.0, 20.0, -10.0]}
    assert [a["name"] for a in node.metadata["axes"]] == ["c", "z", "y", "x"]
    assert [a.get("unit") for a in node.metadata["axes"]] == [None, "millimeter", "millimeter", "millimeter"]
    assert node.data[0].shape == (1, 5, 6, 7)


def test_incomplete_output_is_not_served_and_rewrite_completes(tmp_path, monkeypatch):
    vol = sample_volume((20, 20, 20))
    store = vs.open_store(tmp_path / "s.zarr", create=True)

    import voxelstream.store.chunkio as st
    import voxelstream.store.store as store_mod

    calls = {"n": 0}
    real = st.write_chunk

    def dying(block, root, path, token, block_info=None):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        return real(block, root, path, token, block_info=block_info)

    monkeypatch.setattr(store_mod, "write_chunk", dying)
    with dask.config.set(scheduler="sync"), pytest.raises(OSError):
        store.write(vol, "v", chunks=8)
    assert not store.is_complete("v")
    assert store.volume_ids(name="image") == []
    with pytest.raises(StoreError, match="no 'image' output"):  # built under .staging: never in place
        store.open("v")
    monkeypatch.setattr(store_mod, "write_chunk", real)
    store.write(vol, "v", chunks=8)
    assert store.is_complete("v")
    assert not any((store.path / ".staging").rglob("zarr.json"))  # the dead write's leftovers are gone
    np.testing.assert_array_equal(store.open("v").data.compute(), vol.data.compute())


def test_every_chunk_has_exactly_one_writer(tmp_path, monkeypatch):
    import itertools

    import voxelstream.store.chunkio as st
    import voxelstream.store.planning as plan
    import voxelstream.store.store as store_mod

    regions = []
    real = st.write_chunk

    def spy(block, root, path, token, block_info=None):
        regions.append(tuple(tuple(r) for r in block_info[0]["array-location"])[1:])  # spatial
        return real(block, root, path, token, block_info=block_info)

    monkeypatch.setattr(store_mod, "write_chunk", spy)
    monkeypatch.setattr(plan, "WRITE_BLOCK_BYTES", 8 * 8 * 16 * 2)  # two chunks of int16 per task
    vol = sample_volume((20, 21, 22))
    vol = vol.replace(data=vol.data.rechunk((1, 3, 7, 5)))  # misaligned on purpose
    vs.open_store(tmp_path / "s.zarr", create=True).write(vol, "v", chunks=8)
    writers = {}
    for region in regions:
        for a, b in region:
            assert a % 8 == 0 and (b % 8 == 0 or b in (20, 21, 22))  # whole chunks only
        for chunk in itertools.product(*(range(a // 8, -(-b // 8)) for a, b in region)):
            writers[chunk] = writers.get(chunk, 0) + 1
    assert len(writers) == 3 * 3 * 3 and set(writers.values()) == {1}
    assert len(regions) < 27  # tasks span several chunks
    np.testing.assert_array_equal(vs.open_store(tmp_path / "s.zarr").open("v").data.compute(), vol.data.compute())


def test_write_blocks_grow_x_then_y_within_the_budget():
    from voxelstream.store.planning import write_blocks as _write_blocks

    assert _write_blocks((64, 64, 64), (300, 512, 512), 2) == (64, 512, 512)  # 32 MiB plane slab
    assert _write_blocks((64, 64, 64), (300, 512, 512), 4, budget=16 * 2**20) == (64, 128, 512)
    assert _write_blocks((64, 64, 64), (300, 512, 512), 2, budget=1) == (64, 64, 64)  # never below one chunk


@pytest.mark.parametrize("raw", ["../../etc/passwd", "/abs/path", "..", ".hidden", "a/b\\c", "x" * 500])
def test_ids_cannot_escape_the_store(tmp_path, raw):
    s = safe_id(raw)
    assert "/" not in s and "\\" not in s and not s.startswith(".") and len(s) <= 200
    vol = sample_volume((4, 4, 4))
    store = vol.to_zarr(tmp_path / "s.zarr", raw)
    inside = (tmp_path / "s.zarr").resolve()
    for f in tmp_path.rglob("*"):
        assert f.resolve().is_relative_to(tmp_path)
    assert (inside / "volumes" / s / "image" / "zarr.json").exists()
    assert store.volume_ids() == [raw]


def test_empty_id_is_an_error(tmp_path):
    with pytest.raises(StoreError, match="empty"):
        sample_volume((4, 4, 4)).to_zarr(tmp_path / "s.zarr", "  ")


def test_ids_colliding_after_sanitising_are_refused(tmp_path):
    vol = sample_volume((4, 4, 4))
    vol.to_zarr(tmp_path / "s.zarr", "a/b")
    with pytest.raises(StoreError, match="same store path"):
        vol.to_zarr(tmp_path / "s.zarr", "a_b")


def test_phi_is_dropped_unless_kept(tmp_path):
    vol = sample_volume((4, 4, 4))
    vol = vol.replace(meta={**vol.meta, "phi": {"PatientName": "DOE^JANE"}})
    vol.to_zarr(tmp_path / "a.zarr", "v")
    text = "".join(p.read_text() for p in (tmp_path / "a.zarr").rglob("zarr.json"))
    assert "DOE^JANE" not in text
    vs.open_store(tmp_path / "b.zarr", create=True).write(vol, "v", keep_phi=True)
    text = "".join(p.read_text() for p in (tmp_path / "b.zarr").rglob("zarr.json"))
    assert "DOE^JANE" in text


def test_open_store_errors(tmp_path):
    with pytest.raises(StoreError, match="not a voxelstream store"):
        vs.open_store(tmp_path / "nope")
    store = sample_volume((4, 4, 4)).to_zarr(tmp_path / "s.zarr", "v")
    with pytest.raises(StoreError, match="it has: image"):
        store.open("v", "iso")


def test_params_decide_completeness(tmp_path):
    store = vs.open_store(tmp_path / "s.zarr", create=True)
    store.write(sample_volume((4, 4, 4)), "v", "iso", params={"spacing": (1, 1, 1)})
    assert store.is_complete("v", "iso", {"spacing": [1, 1, 1]})
    assert not store.is_complete("v", "iso", {"spacing": [2, 2, 2]})


def test_channel_axis_round_trips(tmp_path):
    arr = np.arange(2 * 4 * 5 * 6, dtype=np.float32).reshape(2, 4, 5, 6)
    vol = vs.Volume.from_itk_geometry(da.from_array(arr), spacing=(1, 2, 3))
    back = vol.to_zarr(tmp_path / "s.zarr", "rgb", chunks=2).open("rgb")
    np.testing.assert_array_equal(back.data.compute(), arr)
    attrs = json.loads((tmp_path / "s.zarr/volumes/rgb/image/zarr.json").read_text())["attributes"]
    assert [a["name"] for a in attrs["ome"]["multiscales"][0]["axes"]] == ["c", "z", "y", "x"]
    assert zarr.open_array(str(tmp_path / "s.zarr/volumes/rgb/image/0")).chunks == (2, 2, 2, 2)


@pytest.mark.parametrize("section_tasks", [1, 3])
def test_sectioned_write_is_front_to_back_and_marks_complete_last(tmp_path, monkeypatch, section_tasks):
    """With sections of a few write tasks (the 512 default rarely splits a test volume) the
    result, the one-writer rule and the completion marker are the same."""
    import itertools

    import voxelstream.store.chunkio as st
    import voxelstream.store.planning as plan
    import voxelstream.store.store as store_mod

    monkeypatch.setattr(plan, "SECTION_TASKS", section_tasks)
    monkeypatch.setattr(plan, "WRITE_BLOCK_BYTES", 8 * 8 * 8 * 2)  # one chunk per task: many tasks
    store = vs.open_store(tmp_path / "s.zarr", create=True)
    seen = []
    real = st.write_chunk

    def spy(block, root, path, token, block_info=None):
        assert not store.is_complete("v")  # never marked complete while chunks are missing
        seen.append(tuple(a for a, _ in block_info[0]["array-location"])[1:])  # spatial (after c)
        return real(block, root, path, token, block_info=block_info)

    monkeypatch.setattr(store_mod, "write_chunk", spy)
    vol = sample_volume((20, 21, 22))
    store.write(vol, "v", chunks=8)
    assert store.is_complete("v")
    assert sorted(seen) == sorted(itertools.product(range(0, 20, 8), range(0, 21, 8), range(0, 22, 8)))
    z_order = [z for z, _, _ in seen]
    assert z_order == sorted(z_order)  # sections run front to back along z
    np.testing.assert_array_equal(store.open("v").data.compute(), vol.data.compute())


def test_write_keeps_task_annotations(tmp_path):
    """dask.annotate(resources=...) on a stage (how inference asks for a GPU worker) must
    survive the store's graph optimisations, or distributed would ignore it."""
    vol = sample_volume((16, 16, 16))
    with dask.annotate(resources={"GPU": 1}):
        data = vol.data.map_blocks(lambda b: b + 1, dtype=vol.data.dtype)
    store = vs.open_store(tmp_path / "s.zarr", create=True)
    done, finish = store.write(vol.replace(data=data), "v", chunks=8, compute=False)
    annotated = [layer.annotations for layer in done.__dask_graph__().layers.values() if layer.annotations]
    assert {"resources": {"GPU": 1}} in annotated
    dask.compute(done)
    finish()
    np.testing.assert_array_equal(store.open("v").data.compute(), vol.data.compute() + 1)


def test_public_read_api_regions_arrays_and_picklable_readers(tmp_path):
    """What plugins use instead of store paths: read_region (numpy, channel axis included),
    array (lazy dask), reader (picklable, usable inside dask tasks on any scheduler)."""
    import pickle

    rgb = np.random.default_rng(3).integers(0, 255, (37, 41, 3)).astype(np.uint8)
    ct = np.random.default_rng(4).integers(-1000, 1000, (13, 17, 19)).astype(np.int16)
    store = vs.open_store(tmp_path / "s.zarr", create=True)
    store.write(vs.Volume.from_array(rgb, channel_axis=-1, units="pixel"), "photo", chunks=16)
    store.write(vs.Volume.from_array(ct), "ct", chunks=8)
    ref_rgb, ref_ct = np.moveaxis(rgb, -1, 0), ct[None]
    region = (slice(1, 3), slice(5, 30), slice(0, 41))
    np.testing.assert_array_equal(store.read_region("photo", "image", region), ref_rgb[region])
    region = (slice(None), slice(2, 11), slice(0, 17), slice(7, 8))
    np.testing.assert_array_equal(store.read_region("ct", "image", region), ref_ct[region])
    lazy = store.array("ct", "image")
    assert isinstance(lazy, da.Array) and lazy.chunksize == (1, 8, 8, 8)
    np.testing.assert_array_equal(lazy.compute(), ref_ct)
    reader = pickle.loads(pickle.dumps(store.reader("photo", "image")))
    assert reader.shape == ref_rgb.shape and reader.dtype == np.uint8
    parts = [dask.delayed(lambda r, y: r[:, y:y + 10, :])(reader, y) for y in range(0, 37, 10)]
    for scheduler in ("sync", "threads", "processes"):
        got = np.concatenate(dask.compute(*parts, scheduler=scheduler), axis=1)
        np.testing.assert_array_equal(got, ref_rgb)
    with pytest.raises(StoreError, match="no 'iso' output"):
        store.reader("ct", "iso")


def test_a_replaced_output_is_deleted_in_the_background_and_a_dead_processs_copy_by_the_next_writer(
        tmp_path, monkeypatch):
    from voxelstream.store import cleanup
    from voxelstream.store.cleanup import wait_removed

    handed = []
    real = cleanup.remove_later

    def spy(path):  # the old copy reaches the deleting thread whole, moved out of the output's place
        handed.append((path, (path / "zarr.json").is_file()))
        real(path)

    monkeypatch.setattr(cleanup, "remove_later", spy)
    store = vs.open_store(tmp_path / "s.zarr", create=True)
    first, second = sample_volume((12, 12, 12), seed=1), sample_volume((12, 12, 12), seed=2)
    store.write(first, "v", chunks=8)
    assert handed == []  # nothing replaced, nothing to delete
    store.write(second, "v", chunks=8)  # replaces it: the old one moved aside, then deleted
    np.testing.assert_array_equal(store.open("v").data.compute(), second.data.compute())
    assert len(handed) == 1 and handed[0][1] and handed[0][0].parent == store.path / ".staging" / "v"
    wait_removed()
    assert [p.name for p in (store.path / ".staging" / "v").iterdir()] == []
    # a process that died before deleting it leaves the moved-aside copy: the next writer of
    # that output removes it
    leftover = store.path / ".staging" / "v" / f"image-{'ab12' * 8}.old"  # <name>-<token>.old
    (leftover / "0" / "c").mkdir(parents=True)
    (leftover / "zarr.json").write_text("{}")
    store.write(first, "v", chunks=8, params={"again": 1})
    wait_removed()
    assert [p.name for p in (store.path / ".staging" / "v").iterdir()] == []
    np.testing.assert_array_equal(store.open("v").data.compute(), first.data.compute())


def test_writing_one_output_never_clears_another_outputs_staging(tmp_path):
    """Output ``a``'s writer clears what dead writers of ``a`` left under .staging; ``a-b`` (another
    output, another lock) staged at the same time must survive it and commit whole."""
    store = vs.open_store(tmp_path / "s.zarr", create=True)
    vol = sample_volume((12, 12, 12), seed=4)
    delayed, finish = store.write(vol, "v", "a-b", chunks=8, compute=False)
    dask.compute(delayed)
    store.write(vol, "v", "a", chunks=8)
    finish()
    assert store.is_complete("v", "a-b")
    np.testing.assert_array_equal(store.open("v", "a-b").data.compute(), vol.data.compute())


def test_a_staged_output_whose_array_vanished_is_never_marked_complete(tmp_path):
    import shutil

    store = vs.open_store(tmp_path / "s.zarr", create=True)
    vol = sample_volume((12, 12, 12), seed=5)
    delayed, finish = store.write(vol, "v", "x", chunks=8, compute=False)
    dask.compute(delayed)
    for staged in (store.path / ".staging" / "v").iterdir():
        shutil.rmtree(staged / "0")
    with pytest.raises(StoreError, match="staged array is gone"):
        finish()
    assert not store.is_complete("v", "x")
