"""Coinciding test views are encoded once, and the k-NN and the probe of one encoder on the same
clips extract the features once: the results equal those of every view, and of a fresh extraction."""

from __future__ import annotations

from pathlib import Path

import torch

from hpm.eval.encoder import load_encoder
from hpm.eval.linear import LinearProbeConfig
from hpm.eval.video import VideoOptions, build_video_eval_data, clip_features
from hpm.eval.video import feature_memo as memo
from hpm.eval.video.classifier import VideoClassifier, evaluate_views
from hpm.eval.video.distinct import distinct_views, over_views
from hpm.eval.video.features import run_video_knn, run_video_linear


def test_equal_views_of_one_video_share_an_entry_and_videos_never_share() -> None:
    a, b = torch.zeros(2, 3), torch.ones(2, 3)
    views = torch.stack([torch.stack([a, a, a, a]), torch.stack([a, b, a, b]), torch.stack([a, a, a, a])])  # [3, 4, 2, 3]
    distinct, source = distinct_views(views)
    assert distinct.shape == (4, 2, 3)  # a | a, b | a: the third video does not read the first's entry
    assert source.tolist() == [0, 0, 0, 0, 1, 2, 1, 2, 3, 3, 3, 3]
    assert torch.equal(distinct[source], views.flatten(0, 1))
    rows: list[int] = []
    out = over_views(lambda x: rows.append(x.shape[0]) or x.sum(dim=(1, 2)), views)  # [12]
    assert rows == [4] and torch.equal(out, views.flatten(0, 1).sum(dim=(1, 2)))


def test_coinciding_crops_are_encoded_once_with_the_features_of_one_crop(clips: Path, video_run: Path) -> None:
    enc = load_encoder(video_run)
    one, three = (build_video_eval_data(enc.cfg, None, VideoOptions(test_clips=1, test_crops=n), test_subset=6)
                  for n in (1, 3))  # square 16 px frames: the 3 crops coincide
    rows: list[int] = []
    encode = enc.model.forward_encoder
    enc.model.forward_encoder = lambda x: rows.append(x.shape[0]) or encode(x)  # type: ignore[method-assign]
    feats = clip_features(enc.model, three, "cls", batch_size=4)
    assert sum(rows) == len(three.train) + len(three.test)  # one encoding per video, not three
    del enc.model.forward_encoder
    assert torch.allclose(feats[2], clip_features(enc.model, one, "cls", batch_size=4)[2], atol=1e-6)
    classifier = VideoClassifier(enc.model, one.num_classes).eval()
    scores = [evaluate_views(classifier, d.views(d.test), 4, torch.device("cpu"), "fp32") for d in (one, three)]
    assert scores[0] == scores[1]


def test_the_probe_reads_the_features_the_knn_extracted_from_the_same_weights(clips: Path, video_run: Path) -> None:
    enc = load_encoder(video_run)
    data = build_video_eval_data(enc.cfg, None, VideoOptions(test_clips=1), test_subset=6)
    memo.forget()
    probe = LinearProbeConfig(epochs=2)
    knn = run_video_knn(enc.model, data, [5], "cls", 0.07, batch_size=4)
    torch.manual_seed(123)  # the study loads the encoder again for the probe; the decoders do not count
    again = load_encoder(video_run).model
    with torch.no_grad():
        again.decoder_pred.weight.add_(1.0)
    reused = run_video_linear(again, data, "cls", probe, batch_size=4)
    memo.forget()
    fresh = run_video_linear(enc.model, data, "cls", probe, batch_size=4)
    assert (knn["features_reused"], reused["features_reused"], fresh["features_reused"]) == (False, True, False)
    assert reused["top1"] == fresh["top1"] and reused["train_top1"] == fresh["train_top1"]
    with torch.no_grad():
        enc.model.cls_token.add_(1.0)  # other weights: extracted again
    assert not run_video_knn(enc.model, data, [5], "cls", 0.07, batch_size=4)["features_reused"]
    other = build_video_eval_data(enc.cfg, None, VideoOptions(test_clips=1, label="class"), test_subset=6)
    assert not run_video_knn(enc.model, other, [5], "cls", 0.07, batch_size=4)["features_reused"]
    memo.forget()
