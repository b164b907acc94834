"""The command-line surface: every tool has --help, the demo runs end to end, the loader benchmark prints its table."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import pytest

from reactdiff import config
from reactdiff.cli import BENCHES, COMMANDS, main as cli_main

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("command", [c for c in COMMANDS if c != "bench"])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as done:
        cli_main([command, "--help"])
    assert done.value.code == 0 and "usage" in capsys.readouterr().out


@pytest.mark.parametrize("tool", ["make_shards.py", "make_synthetic_react.py", "bench_loader.py", "bench_model.py",
                                  "bench_train.py", "bench_metrics.py", "bench_cluster.py", "bench_render.py",
                                  "bench_watch.py"])
def test_tools_run_without_install(tool):
    res = subprocess.run([sys.executable, str(REPO / "tools" / tool), "--help"], capture_output=True, text=True,
                         cwd="/", check=False)
    assert res.returncode == 0 and "usage" in res.stdout, res.stderr


def test_train_help_lists_every_config_key(capsys):
    with pytest.raises(SystemExit):
        cli_main(["train", "--help"])
    out = capsys.readouterr().out
    for key in ("data.window = 64  (int)", "model.anchor = 'regression'  (none | last_frame | regression)",
                "sample.temperature = 0.85", "train.val_every = 1000", "name = 'reactdiff'"):
        assert key in out, key
    assert "frames the model denoises at once" in out  # the schema's comments
    assert "U-Net input, frame by frame" in " ".join(out.split())  # a comment continued on the next line
    assert all(f"  {key} = " in out for key, *_ in config.schema_keys())


def test_config_print_and_overrides_in_any_order(capsys):
    from reactdiff import cli_args
    from reactdiff.train.cli import build_parser as train_parser
    from reactdiff.sampling.cli import build_parser as sample_parser

    assert cli_main(["config", "train.steps=7", "--config", str(REPO / "configs/demo.yaml"), "data.window=32"]) == 0
    out = capsys.readouterr().out
    assert "name: demo" in out and "steps: 7" in out and "window: 32" in out
    assert cli_main(["config", "--keys"]) == 0 and "data.val_shards" in capsys.readouterr().out
    assert cli_main(["config", "nope.key=1"]) == 2 and "nope" in capsys.readouterr().err
    args = cli_args.parse(train_parser(), ["a.b=1", "--config", "x.yaml", "c.d=2"])
    assert args.config == "x.yaml" and args.overrides == ["a.b=1", "c.d=2"]
    args = cli_args.parse(sample_parser(), ["sample.k=2", "--export", "e", "--shards", "s", "--out", "o", "x.y=3",
                                            "--quiet"])
    assert args.export == "e" and args.quiet and args.overrides == ["sample.k=2", "x.y=3"]
    with pytest.raises(SystemExit):
        cli_args.parse(train_parser(), ["--config", "x.yaml", "a.b=1", "--nope"])


def test_unknown_command_is_an_error(capsys):
    assert cli_main(["nope"]) == 2 and "unknown command" in capsys.readouterr().err
    assert cli_main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)


def test_demo_end_to_end(tmp_path, capsys):
    args = ["demo", "--work", str(tmp_path / "work"), "--shards", str(tmp_path / "shards"), "--sessions", "2,0,1",
            "--frames", "160", "--video-size", "16", "--batches", "4", "--quiet", "data.window=32", "data.history=16",
            "train.steps=6", "train.checkpoint_every=3", "train.log_every=2", "train.warmup_steps=2"]
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    assert "resume check: 3 batches + restore + 3 batches == 6 straight: True" in out
    assert "[demo] OK: every test role sample read exactly once (4/4)" in out
    assert "5/9 training: 2 processes, 6 steps" in out and "[demo] 7/9 metrics" in out
    assert "6/9 evaluation fan-out" in out and "4 speaker clips x 4 reactions of 160 frames" in out
    report = json.loads((tmp_path / "work" / "eval" / "metrics.json").read_text())  # the generator's own listeners
    assert report["results"]["reference: new person (the generator)"]["FRDist"] > 0  # scored next to the model
    assert "8/9 rendering (reactdiff render)" in out and "00000/gt.mp4, 00000/k0.mp4, 00000/k1.mp4" in out
    assert "9/9 live (reactdiff serve, loopback): test clip 0 streamed" in out and "160 frames x 4 reactions" in out
    with av.open(str(tmp_path / "work" / "render" / "00000" / "k1.mp4")) as c:
        assert (c.streams.video[0].width, c.streams.video[0].height) == (256, 128) and len(c.streams.audio) == 1
        assert sum(1 for _ in c.decode(video=0)) == 160
    assert (tmp_path / "work" / "config.yaml").is_file() and not (tmp_path / "shards" / "val").exists()
    assert cli_main(args) == 0  # a rerun reuses the dataset and the verified shards
    out = capsys.readouterr().out
    assert "reusing" in out and "(wrote 0, kept 2)" in out and "steps 6 -> 6" in out


def test_bench_loader_prints_ratios(capsys):
    assert cli_main(["bench", "loader", "--sessions", "2", "--seconds", "0.3", "--batch-size", "2",
                     "--workers", "0"]) == 0
    out = capsys.readouterr().out
    assert "vs raw" in out and out.count("x\n") >= 5 and "the raw loader" in out
    assert "stock webdataset streaming" in out and "x stock webdataset streaming the same shards" in out
    assert set(BENCHES) == {"loader", "model", "train", "metrics", "cluster", "render", "watch", "stream", "quality"}


def test_bench_train_prints_its_table(capsys):
    assert cli_main(["bench", "train", "--sizes", "tiny", "--procs", "1", "--steps", "2", "--batch", "4",
                     "--sessions", "2", "--skip-paper"]) == 0
    out = capsys.readouterr().out
    assert "end-to-end training throughput" in out and "vs 1 proc" in out


def test_bench_render_prints_its_table(capsys):
    assert cli_main(["bench", "render", "--frames", "6", "--pirender-frames", "2", "--size", "64", "--rings", "12",
                     "--segments", "16", "--chunk", "4", "--p3d-frames", "4"]) == 0
    out = capsys.readouterr().out
    assert "vs per-frame" in out and "PIRender   16 frames per call" in out and "grey torch 4 frames per call" in out
    from reactdiff.render import p3d

    assert ("grey p3d   4 frames per call" in out) == (p3d.unavailable() is None)  # the backend, when it imports
    assert "vs torch batched" in out


def test_bench_model_prints_its_tables(capsys):
    assert cli_main(["bench", "model", "--sizes", "tiny", "--steps", "2", "--train-batches", "2", "--window", "32",
                     "--history", "16"]) == 0
    out = capsys.readouterr().out
    assert "vs released" in out and "training step" in out and "tiny" in out
    rows = [line.split() for line in out.splitlines() if line.startswith("tiny ") and len(line.split()) == 11]
    assert [(r[2], r[3]) for r in rows] == [("2", "eager"), ("2", "compiled")]
    assert all(r[8] == "1.00x" for r in rows if r[3] == "eager")  # each batch's compiled row against its eager one
    clips = [line.split() for line in out.splitlines() if line.startswith("tiny ") and len(line.split()) == 7]
    assert [r[1] for r in clips] == ["1", "4"] and clips[0][-1] == "1.00x"


def test_bench_watch_prints_its_table(capsys):
    assert cli_main(["bench", "watch", "--configs", str(REPO / "configs/demo.yaml"), "--repeats", "1",
                     "train.val_windows=4", "train.val_levels=2", "data.eval_frames=64", "train.sample_k=2",
                     "train.sample_steps=2", "train.sample_clips=1"]) == 0
    out = capsys.readouterr().out
    assert "validation + samples as a share of training time" in out
    [row] = [line for line in out.splitlines() if line.startswith("demo ")]
    assert len(row.split()) == 10 and float(row.split()[-1]) > 0
    assert "demo: validation = 4 windows x 2 levels x 2 (raw + EMA)" in out


def test_bench_quality_trains_samples_and_tabulates(tmp_path, capsys):
    """The whole quality benchmark, tiny: dataset -> shards -> 2-rank training -> sampling -> the table; a
    sample-only variant reuses the base training."""
    from reactdiff.cli import main as cli_main

    work = tmp_path / "q"
    args = ["bench", "quality", "--work", str(work), "--train-sessions", "2", "--val-sessions", "0",
            "--test-sessions", "1", "--clips", "2", "--quiet", "--variant", "cold:sample.temperature=0.5",
            "model.size=tiny", "train.steps=4", "train.log_every=2", "data.batch_size=4", "data.num_workers=0",
            "sample.k=2", "sample.steps=2"]
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    assert "| base |" in out and "| cold |" in out and "| baseline: random |" in out
    assert "| reference: ground truth |" in out
    assert "planted coupling" in out and "targets met" in out
    results = json.loads((work / "quality.json").read_text())
    assert [r["name"] for r in results] == ["base", "cold", "oracle: new person", "oracle: same person"]
    assert results[1]["train_s"] == 0.0  # reused
    assert "| oracle: new person |" in out and results[2]["results"]["model"]["FRDist"] > 0
    assert set(results[0]["couplings"]) and set(results[0]["checks"])
    assert "nod-band gain after phrase ends / elsewhere" in out
    assert "| run: power / data's per band, 0-1 Hz / 1-3 Hz / 3-6 Hz / 6-12.5 Hz |" in out
    assert set(results[0]["nod_gain"]) == {"1.0", "3.0"} and results[1]["nod_gain"] == results[0]["nod_gain"]
    assert "nod_gain" not in results[2]  # the oracle has no denoiser
    assert (work / "quality.md").read_text().startswith("| run / row |")
    assert results[0]["train_s"] > 0
    # a rerun reuses the finished base training (its saved config equals the one the rerun resolves)
    assert cli_main([*args, "--no-oracle"]) == 0
    assert json.loads((work / "quality.json").read_text())[0]["train_s"] == 0.0
    # ...and so does a variant under another name that trains what base trained (a model key at base's value)
    # and samples with its own sampling settings, not with those the reused run recorded
    exported = work / "runs" / "base" / "export" / "config.yaml"
    saved = exported.read_text()
    assert "  temperature: 1.0\n" in saved
    exported.write_text(saved.replace("  temperature: 1.0\n", "  temperature: 0.3\n"))
    assert args[13:15] == ["--variant", "cold:sample.temperature=0.5"]
    assert cli_main([*args[:13], "--no-base", "--no-oracle", "--variant", "again:model.size=tiny", *args[15:]]) == 0
    [again] = json.loads((work / "quality.json").read_text())
    assert again["name"] == "again" and again["train_s"] == 0.0 and not (work / "runs" / "again").exists()
    assert "temperature" not in json.loads((work / "eval" / "again" / "manifest.json").read_text())["settings"]
    exported.write_text(saved)
    # an unfinished training of the same config resumes from its checkpoint instead of starting over
    import shutil

    shutil.rmtree(work / "runs" / "base" / "export")
    assert cli_main([*args, "--no-oracle"]) == 0
    assert json.loads((work / "quality.json").read_text())[0]["train_s"] > 0
    assert len((work / "runs" / "base" / "starts.jsonl").read_text().splitlines()) == 2
    # ...and so does one whose schema gained a sampling key since (sampling never changes what was trained)
    from reactdiff.bench.quality import trained_alike

    run = work / "runs" / "base"
    cfg = config.load(run / "config.yaml", saved=True)
    saved = (run / "config.yaml").read_text()
    assert "  guidance_rescale: 0.0\n" in saved
    (run / "config.yaml").write_text(saved.replace("  guidance_rescale: 0.0\n", ""))
    assert trained_alike(run, cfg)
    assert trained_alike(run, config.load(run / "config.yaml", ["sample.k=7"], saved=True))
    assert not trained_alike(run, config.load(run / "config.yaml", ["train.steps=5"], saved=True))


def test_bench_quality_on_mars_trains_at_30_fps_and_scores_react2025(tmp_path, capsys):
    """--layout mars: a synthetic MARS dataset of equal-length 30 fps clips -> MARS shards -> training told the
    data's frame rate -> whole-clip sampling -> the react2025 metrics in the table, the couplings at each row's lag in
    30 fps frames, the oracle rows; a REACT benchmark's folder is refused rather than mixed."""
    from reactdiff.bench import quality_mars
    from reactdiff.cli import main as cli_main

    work = tmp_path / "qm"
    args = ["bench", "quality", "--layout", "mars", "--work", str(work), "--train-sessions", "2", "--val-sessions",
            "0", "--test-sessions", "1", "--clips", "2", "--quiet", "model.size=tiny", "train.steps=4",
            "train.log_every=2", "data.batch_size=4", "data.num_workers=0", "sample.k=2", "sample.steps=2"]
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    assert "| run / row | FRC | FRD | S-MSE | FRVar |" in out
    assert "| run: power / data's per band, 0-1 Hz / 1-3 Hz / 3-6 Hz / 6-15 Hz |" in out
    assert "| base |" in out and "| baseline: random |" in out and "| oracle: new person |" in out
    results = json.loads((work / "quality.json").read_text())
    assert [r["name"] for r in results] == ["base", "oracle: new person", "oracle: same person"]
    model = results[0]["results"]["model"]
    assert model["FRD"] > 0 and "jitter_ratio" in model["motion"]["rotation"]
    assert {"FRD below every baseline", "FRC above mean and random", "S-MSE >= 0.5 x random"} <= set(
        results[0]["checks"])
    saved = config.load(work / "runs/base/config.yaml", saved=True)
    assert (saved.data.eval_frames, saved.model.loss_band.fps, saved.model.band_gate.fps) == (0, 30.0, 30.0)
    rows = quality_mars.truth(work / "shards/test")
    meta = json.loads((work / "mars/synthetic.json").read_text())
    assert {r.frames for r in rows} == {quality_mars.MARS_FRAMES} and len(rows) == 4
    lags = quality_mars.listener_lags(meta, rows)
    assert ((10 <= lags) & (lags <= 14)).all()  # 8-12 frames at 25 fps
    assert results[2]["results"]["model"]["FRD"] > 0 and set(results[0]["nod_gain"]) == {"1.0", "3.0"}
    with pytest.raises(SystemExit, match="holds the MARS benchmark"):
        cli_main(["bench", "quality", "--work", str(work), "--quiet"])


def test_bench_quality_variants_keep_list_values_whole():
    from reactdiff.bench.quality import parse_variant

    assert parse_variant("g:model.band_gate.edges_hz=[0.5,1.5],train.lr=1e-3") == (
        "g", ["model.band_gate.edges_hz=[0.5,1.5]", "train.lr=1e-3"])
    assert parse_variant("t:sample.temperature=1.05") == ("t", ["sample.temperature=1.05"])
    with pytest.raises(ValueError, match="NAME:key=value"):
        parse_variant("no-keys")


def test_launch_render_takes_the_render_options_but_not_overwrite():
    """A requeued render task continues from the videos it wrote: the fan-out has no --overwrite."""
    from reactdiff.cluster import launch_cli

    args = launch_cli.parse(["render", "--cluster", "c.yaml", "--reactions", "r", "--out", "o", "--grid",
                             "--size", "64"])
    assert (args.samples, args.grid, args.size) == ("r", True, 64)
    with pytest.raises(SystemExit):
        launch_cli.parse(["render", "--cluster", "c.yaml", "--reactions", "r", "--out", "o", "--overwrite"])
