"""End-to-end fine-tuning (MAE / BEiT recipe) of a pre-trained encoder as a timm ViT classifier.

The encoder becomes a timm ``VisionTransformer`` with ``global_pool="avg"``: the patch tokens
are averaged and normalised by ``fc_norm`` (the pre-trained final ``norm`` is dropped, as in
MAE), then a linear head classifies. Training uses AdamW with layer-wise lr decay
(``timm.optim.create_optimizer_v2``), drop path, RandAugment and random erasing
(``timm.data.create_transform``), mixup / cutmix with label smoothing (``timm.data.Mixup`` and
``SoftTargetCrossEntropy``) and a per-step warm-up + cosine schedule. Top-1 is measured on the
centre-cropped test split.

Recipes (:data:`~hpm.eval.recipes.RECIPES`, in :mod:`hpm.eval.recipes`): ``reference``, the CPU
recipe for the bundled data (10 epochs on 10 000 images, tuned on images held out of the training
subset: ``val_holdout``), ``small``, a quick 3-epoch check, ``paper_vit_b16``, the paper's ViT-B
recipe (spec section 4: 100 epochs, batch 384, blr 5e-4, 5 warm-up epochs, layer decay 0.8,
weight decay 0.05, drop path 0.1, RandAugment m9, random erasing 0.25, mixup 0.8, cutmix 1.0,
label smoothing 0.1, global average pooling), and ``few_labels``, the reference stretched to the
same number of images seen whatever the number of labelled images (``images_seen``). A YAML file
and ``key=value`` overrides change any key. Multi-process training follows ``hpm pretrain``:
``torchrun ... -m hpm.cli eval finetune``; each process takes ``batch_size`` images per
micro-step.

Checkpoints and resumption: given a fine-tune directory (``hpm eval finetune`` uses the result
file's path without ``.json``: ``--out X/eval/finetune.json`` fine-tunes in ``X/eval/finetune/``),
:func:`run_finetune` writes ``DIR/checkpoints/step_XXXXXXXX/`` (:mod:`hpm.engine.checkpoint`:
``model.safetensors`` holds the timm classifier, ``state.pt`` the optimizer, grad scaler, step,
history, the running loss sums, the training seconds, every rank's RNG states, the recipe and
what was fine-tuned) after every epoch and every ``ckpt_every_steps`` optimizer steps, keeping
the newest :data:`KEEP_CKPTS`. Running it again resumes at the next optimizer step: the data
sampler restarts the epoch after the batches already done and the RNG states are restored
where the uninterrupted run had them. With ``num_workers=0`` (augmentation in the main process)
a resumed fine-tune is bit-identical to an uninterrupted one. With workers, the data order, the
mixup / cutmix draws, drop path, the weights and the lr schedule are exact, but the workers
start with fresh RNG streams, so the per-image augmentations (crop, flip, RandAugment, erasing)
after the resume point differ from an uninterrupted run (statistically the same recipe). A
different recipe or source is refused (:func:`check_same_finetune`); a finished fine-tune
returns its stored result without training. The loop, its checkpoints, the directory's lock,
the stop on SIGTERM / SIGUSR1 / Ctrl-C and the non-finite-loss error are the run engine's
(:mod:`hpm.engine.loop`); this package gives it the task (:mod:`.task`).

Files: :mod:`.augment` (data and augmentation), :mod:`.classifier` (the timm classifier, its
top-1 and spec), :mod:`.task` (one step, end of epoch, checkpoint contents), :mod:`.resume`
(resume and refusal), :mod:`.run` (set-up and :func:`run_finetune`).
"""

from hpm.eval.finetune.classifier import classifier_spec, evaluate_classifier
from hpm.eval.finetune.resume import RESUME_FREE_KEYS, check_same_finetune
from hpm.eval.finetune.run import run_finetune
from hpm.engine.supervised import KEEP_CKPTS
from hpm.eval.recipes import RECIPES, FinetuneConfig, build_finetune_config

__all__ = [
    "KEEP_CKPTS", "RECIPES", "RESUME_FREE_KEYS", "FinetuneConfig", "build_finetune_config", "check_same_finetune",
    "classifier_spec", "evaluate_classifier", "run_finetune",
]
