"""Real (mask-averaged) and predicted per-patch loss, and the ranking-quality measure."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hpm.engine.integrity import seal
from hpm.errors import CheckpointError
from hpm.eval.patch_loss import (
    load_pretrained,
    masked_view_scores,
    masked_view_spearman,
    predicted_patch_loss,
    ranking_quality,
    real_patch_loss,
)
from hpm.losses import patch_targets
from hpm.models import build_model
from tests.eval.conftest import save_random_run, tiny_config


def _model(seed: int = 0):
    torch.manual_seed(seed)
    return build_model(tiny_config().model).eval()


def test_real_loss_equals_a_plain_loop_over_masks() -> None:
    model = _model()
    imgs = torch.randn(3, 1, 32, 32)
    got, count = real_patch_loss(model, imgs, num_masks=4, generator=torch.Generator().manual_seed(5))

    # independent computation: the same noise, the model's full forward, per-patch MSE by hand
    g = torch.Generator().manual_seed(5)
    n, num_patches, k = 3, model.num_patches, 48  # 64 patches, 75% masked
    sums = torch.zeros(n, num_patches)
    hits = torch.zeros(n, num_patches)
    for _ in range(4):
        noise = torch.rand(n, num_patches, generator=g)
        order = noise.argsort(dim=1, descending=True)
        ids_mask, ids_keep = order[:, :k], order[:, k:]
        with torch.no_grad():
            pred = model(imgs, ids_keep, ids_mask).pred  # [N, K, P]
        patches = model.patchify(imgs)
        for i in range(n):
            for j in range(k):
                p = int(ids_mask[i, j])
                target = patch_targets(patches[i, p][None, None])[0, 0]
                sums[i, p] += (pred[i, j] - target).pow(2).mean()
                hits[i, p] += 1
    expected = sums / hits
    assert torch.equal(count, hits.long())
    assert torch.equal(torch.isnan(got), hits == 0)
    torch.testing.assert_close(got[hits > 0], expected[hits > 0], rtol=1e-5, atol=1e-6)
    assert int(count.sum()) == 4 * k * n


def test_more_masks_cover_every_patch() -> None:
    _, count = real_patch_loss(_model(), torch.randn(2, 1, 32, 32), num_masks=30,
                               generator=torch.Generator().manual_seed(0))
    assert bool((count > 0).all())
    with pytest.raises(ValueError, match="num_masks"):
        real_patch_loss(_model(), torch.randn(1, 1, 32, 32), num_masks=0)


def test_ranking_quality_is_one_for_a_perfect_predictor_and_minus_one_reversed(tmp_path: Path, monkeypatch) -> None:
    from hpm.config import build_config

    full_view = build_config(overrides={"model": tiny_config().model.model_dump(), "mask": {"teacher_view": "full"}})
    run = save_random_run(tmp_path / "run", full_view)
    models = load_pretrained(run)
    imgs = torch.randn(4, 1, 32, 32)
    real, _ = real_patch_loss(models.student, imgs, num_masks=40, generator=torch.Generator().manual_seed(1))
    assert not torch.isnan(real).any()

    for sign in (1.0, -1.0):
        monkeypatch.setattr(type(models.student), "score_patches", lambda self, x, s=sign: s * real[: x.shape[0]])
        out = ranking_quality(models, imgs, num_masks=40, seed=1)
        assert out["teacher_spearman"] == pytest.approx(sign, abs=1e-6)
        assert out["student_spearman"] == pytest.approx(sign, abs=1e-6)
        assert out["teacher_top25"] == pytest.approx(1.0 if sign > 0 else 0.0)
    # the diagnostics: the real loss against itself from other masks, and masked-view scoring
    for key in ("real_retest_spearman", "student_masked_avg_spearman", "teacher_masked_avg_spearman"):
        assert -1.0 <= out[key] <= 1.0
    assert 0.0 <= out["teacher_masked_avg_top25"] <= 1.0


def test_masked_view_scores_average_the_normalised_scores_of_masked_patches() -> None:
    from hpm.engine.ema import build_teacher
    from hpm.masking import random_mask

    teacher = build_teacher(_model())  # no reconstructor: masked-view scoring must not need one
    imgs = torch.randn(2, 1, 32, 32)
    got = masked_view_scores(teacher, imgs, num_masks=3, generator=torch.Generator().manual_seed(2))
    g = torch.Generator().manual_seed(2)
    sums, hits = torch.zeros(2, 64), torch.zeros(2, 64)
    for _ in range(3):
        ids = random_mask(torch.rand(2, 64, generator=g), 48)
        for i in range(2):
            restore = torch.argsort(torch.cat([ids.ids_keep[i], ids.ids_mask[i]]))[None]
            x = teacher.forward_decoder_input(teacher.forward_encoder(imgs[i : i + 1], ids.ids_keep[i : i + 1]), restore)
            scores = teacher.forward_loss_predictor(x)[0, ids.ids_mask[i]]  # [K]
            sums[i, ids.ids_mask[i]] += (scores - scores.mean()) / scores.std()
            hits[i, ids.ids_mask[i]] += 1
    assert torch.equal(torch.isnan(got), hits == 0)
    torch.testing.assert_close(got[hits > 0], (sums / hits)[hits > 0], rtol=1e-4, atol=1e-5)
    with pytest.raises(CheckpointError, match="no loss predictor"):
        masked_view_scores(build_model(tiny_config().model, loss_predictor=False), imgs)


def test_load_pretrained_reads_every_weight(tmp_path: Path) -> None:
    cfg = tiny_config()
    run = save_random_run(tmp_path / "run", cfg, seed=3)
    models = load_pretrained(run)
    torch.manual_seed(3)
    reference = build_model(cfg.model)
    for name, value in reference.state_dict().items():
        assert torch.equal(models.student.state_dict()[name], value), name  # decoders too
    assert models.teacher is not None and models.teacher.decoder_blocks is None
    assert not any(p.requires_grad for p in models.student.parameters())
    imgs = torch.randn(2, 1, 32, 32)
    assert predicted_patch_loss(models.teacher, imgs).shape == (2, 64)


def test_mae_run_has_no_predicted_loss(tmp_path: Path) -> None:
    from hpm.config import build_config

    cfg = build_config(overrides={"model": {**tiny_config().model.model_dump(), "in_chans": 1}, "loss": {"predictor": "none"}})
    models = load_pretrained(save_random_run(tmp_path / "run", cfg, teacher=False))
    assert models.teacher is None
    with pytest.raises(CheckpointError, match="no loss predictor"):
        predicted_patch_loss(models.student, torch.randn(1, 1, 32, 32))
    assert ranking_quality(models, torch.randn(2, 1, 32, 32)) == {}


def test_checkpoint_of_another_architecture_is_refused(tmp_path: Path) -> None:
    run = save_random_run(tmp_path / "run", tiny_config())
    other = tiny_config(embed_dim=48, num_heads=3)
    (run / "checkpoints").rename(tmp_path / "keep")
    save_random_run(run, other)  # a config of one width ...
    ckpt = next((run / "checkpoints").iterdir())
    (ckpt / "model.safetensors").unlink()
    (tmp_path / "keep" / next((tmp_path / "keep").iterdir()).name / "model.safetensors").rename(ckpt / "model.safetensors")
    seal(ckpt)  # weights of another architecture written so, not damaged later
    with pytest.raises(CheckpointError, match="another architecture"):  # ... with weights of another
        load_pretrained(run)


def test_masked_view_spearman_scores_the_masked_patches_of_each_mask() -> None:
    from hpm.engine.ranking import spearman
    from hpm.masking import random_mask

    model = _model()
    imgs = torch.randn(2, 1, 32, 32)
    got = masked_view_spearman(model, imgs, num_masks=2, generator=torch.Generator().manual_seed(4))
    g = torch.Generator().manual_seed(4)
    want = torch.zeros(2)
    for _ in range(2):
        ids = random_mask(torch.rand(2, 64, generator=g), 48)
        out = model(imgs, ids.ids_keep, ids.ids_mask)
        target = patch_targets(torch.gather(model.patchify(imgs), 1, ids.ids_mask[..., None].expand(-1, -1, 16)))
        real = (out.pred - target).pow(2).mean(-1)
        want += spearman(out.scores.gather(1, ids.ids_mask), real) / 2
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("views", [1, 2])
def test_masked_view_teacher_diagnostic_equals_a_plain_loop(tmp_path: Path, views: int) -> None:
    """ranking_quality's teacher_* for a masked-view run: the teacher's partial views (third
    generator, seed + 2), Spearman over the patches they hid, top quarter taken among them."""
    from scipy.stats import spearmanr

    from hpm.config import build_config

    cfg = build_config(overrides={"model": {**tiny_config().model.model_dump()},
                                  "mask": {"teacher_view": "masked", "teacher_views": views}})
    models = load_pretrained(save_random_run(tmp_path / "run", cfg, seed=1))
    imgs = torch.randn(3, 1, 32, 32)
    out = ranking_quality(models, imgs, num_masks=6, seed=4)
    assert out["teacher_view"] == "masked" and out["teacher_views"] == views

    real = real_patch_loss(models.student, imgs, 6, generator=torch.Generator().manual_seed(4))[0]  # first draws
    real = torch.where(torch.isnan(real), torch.nanmean(real, dim=1, keepdim=True), real)
    g = torch.Generator().manual_seed(4 + 2)
    order = torch.rand(3, 64, generator=g).argsort(dim=1, descending=True)
    teacher = models.teacher
    rho, top = [], []
    for i in range(3):
        sums, hits = torch.zeros(64), torch.zeros(64)
        for v in range(views):
            perm = torch.roll(order[i], v * 16)
            hide, keep = perm[:48], perm[48:]
            restore = torch.argsort(torch.cat([keep, hide]))[None]
            x = teacher.forward_decoder_input(teacher.forward_encoder(imgs[i : i + 1], keep[None]), restore)
            s = teacher.forward_loss_predictor(x)[0, hide]
            sums[hide] += (s - s.mean()) / s.std()
            hits[hide] += 1
        scored = hits > 0
        score = sums / hits.clamp(min=1)
        rho.append(spearmanr(score[scored].numpy(), real[i, scored].numpy()).statistic)
        chosen = set(torch.where(scored, score, torch.tensor(float("-inf"))).topk(16).indices.tolist())
        hardest = set(real[i].topk(16).indices.tolist())
        top.append(len(chosen & hardest) / 16)
    assert out["teacher_spearman"] == pytest.approx(sum(rho) / 3, abs=1e-4)
    assert out["teacher_top25"] == pytest.approx(sum(top) / 3, abs=1e-6)
    # the full-image pass is reported beside it
    full = predicted_patch_loss(teacher, imgs)
    from hpm.engine.ranking import spearman

    assert out["teacher_full_spearman"] == pytest.approx(float(spearman(full, real).mean()), abs=1e-5)


@pytest.mark.parametrize("predictor", ["none", "relative"])
def test_ranking_quality_of_an_attention_run_ranks_the_teachers_attention(tmp_path: Path, monkeypatch, predictor: str) -> None:
    """teacher_attention_*: the teacher's [CLS] attention against the real loss (1 when the attention is
    the real loss, -1 reversed); for an attention run teacher_* is that attention as the run computes it,
    and with a predictor teacher_full_* stays the predicted loss."""
    from hpm.config import build_config

    cfg = build_config(overrides={"model": tiny_config().model.model_dump(), "loss": {"predictor": predictor},
                                  "mask": {"strategy": "attention"}})
    models = load_pretrained(save_random_run(tmp_path / "run", cfg))
    assert models.teacher is not None and cfg.mask.teacher_view == "full"
    imgs = torch.randn(4, 1, 32, 32)
    real, _ = real_patch_loss(models.student, imgs, num_masks=40, generator=torch.Generator().manual_seed(1))
    for sign in (1.0, -1.0):
        monkeypatch.setattr(type(models.teacher), "attention_scores",
                            lambda self, x, ids_keep=None, s=sign: s * real[: x.shape[0]])
        out = ranking_quality(models, imgs, num_masks=40, seed=1)
        assert out["mask_strategy"] == "attention"
        assert out["teacher_attention_spearman"] == pytest.approx(sign, abs=1e-6)
        assert out["teacher_spearman"] == pytest.approx(sign, abs=1e-6)
        assert out["teacher_attention_top25"] == pytest.approx(1.0 if sign > 0 else 0.0)
    assert ("student_spearman" in out) == ("teacher_full_spearman" in out) == (predictor != "none")
    if predictor != "none":
        assert out["teacher_full_spearman"] != pytest.approx(out["teacher_spearman"])


def test_hpm_runs_report_the_teachers_attention_beside_its_predicted_loss(tmp_path: Path) -> None:
    from scipy.stats import spearmanr

    models = load_pretrained(save_random_run(tmp_path / "run", tiny_config()))
    imgs = torch.randn(3, 1, 32, 32)
    out = ranking_quality(models, imgs, num_masks=5, seed=2)
    assert out["mask_strategy"] == "hpm" and "teacher_spearman" in out
    real = real_patch_loss(models.student, imgs, 5, generator=torch.Generator().manual_seed(2))[0]
    real = torch.where(torch.isnan(real), torch.nanmean(real, dim=1, keepdim=True), real)
    attention = models.teacher.attention_scores(imgs)
    want = sum(spearmanr(attention[i].numpy(), real[i].numpy()).statistic for i in range(3)) / 3
    assert out["teacher_attention_spearman"] == pytest.approx(want, abs=1e-4)
