"""Rebuild a model the package ships, from nothing: data, corpus, labels, training, evaluation, card.

```bash
mtqnet build-pretrained teacher-pesq-stoi-sdi --work_dir work/teacher            # the shipped teacher (about 1 h)
mtqnet build-pretrained teacher-pesq-stoi-sdi --work_dir work/t --install        # ... and replace the shipped one
mtqnet build-pretrained teacher-pesq-stoi-sdi --work_dir work/small \
    --clean_dir speech/ --count 300 --epochs 1                                    # a scaled-down run (the tests)
mtqnet build-pretrained small-p835 --work_dir work/small-p835                    # the S/N/G model (builds/student.py)
```

The teacher's stages (`builds/teacher.py`, `builds/stages.py`), each resumed when its output is there
(`work_dir/state.json`, a `builds.ledger.StageLedger`, records the finished ones and the settings; other settings in
the same folder are refused):

1. `packages`  the Debian packages of real speech and noise (`speech_pool.fetch_packages`: apt-get download and
               dpkg -x, no root install); skipped with `--clean_dir` or an existing `--packages_dir`;
2. `pool`      the clean-speech and noise pools (`mtqnet speech-pool`);
3. `corpus`    `mtqnet corpus`: noises (recordings + procedural), SNRs -5..30 dB and clean clips, every system
               (enhancers, codecs, reverberation, band limiting, clipping, packet loss); a test part with speakers,
               noise recordings and systems never used in training, beside seen conditions;
4. `labels`    intrusive PESQ / STOI / SDI of every clip (`mtqnet annotate --teacher intrusive`);
5. `train`     `mtqnet train --method scratch --target_columns pesq stoi sdi` (the MOSA-Net teacher);
6. `evaluate`  LCC / SRCC / MSE / bias on the test part, overall and per unseen factor (speaker, noise, system,
               language);
7. `ship`      the model folder (`work_dir/model`, or the package's shipped folder with `--install`): weights,
               configs, model card with model-index, `build_info.json` (recipe, data, timings, results).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Sequence

from ..builds.recipes import StudentRecipe, TeacherRecipe
from ..builds.student import build_student
from ..builds.teacher import STAGES, build_teacher
from ..pretrained import PRETRAINED_DIR, SHIPPED


def parse_args(argv: Sequence[str] | None = None, prog: str = "mtqnet build-pretrained") -> argparse.Namespace:
    defaults, student = TeacherRecipe(), StudentRecipe()
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0],
                                     epilog="Stages: " + ", ".join(STAGES) + " (teacher); see docs/pretrained.md")
    parser.add_argument("name", choices=[name.split("/")[-1] for name in SHIPPED], help="the model to rebuild")
    parser.add_argument("--work_dir", type=Path, required=True, help="new folder, or an earlier run's to resume it")
    parser.add_argument("--packages_dir", type=Path, help="already unpacked packages (default: fetched into work_dir)")
    parser.add_argument("--clean_dir", type=Path, help="use this clean speech instead of the packages' pool")
    parser.add_argument("--noise_dir", type=Path, help="noise recordings to use with --clean_dir")
    corpus = parser.add_argument_group("corpus (both models)")
    corpus.add_argument("--count", type=int, default=defaults.count, help="corpus clips (default %(default)s)")
    corpus.add_argument("--test_noises", nargs="+", default=list(defaults.test_noises),
                        help="noises held out of training (default: %(default)s)")
    corpus.add_argument("--test_systems", nargs="+", default=list(defaults.test_systems),
                        help="systems held out of training (default: %(default)s)")
    corpus.add_argument("--systems", nargs="+", default=list(defaults.systems), help="corpus systems (default all)")
    teacher = parser.add_argument_group("teacher-pesq-stoi-sdi")
    teacher.add_argument("--epochs", type=float, default=defaults.epochs, help="training epochs (default %(default)s)")
    teacher.add_argument("--preset", default=defaults.preset, help="model size (default %(default)s)")
    teacher.add_argument("--train_clips", type=int, default=defaults.train_clips,
                         help="training clips drawn from the corpus's train part (default %(default)s)")
    small = parser.add_argument_group("small-p835")
    small.add_argument("--pool", type=int, default=student.pool, help="training clips drawn (default %(default)s)")
    small.add_argument("--labelled", type=int, default=student.labelled,
                       help="of them, clips with DNSMOS stand-in labels (default %(default)s)")
    small.add_argument("--validation", type=int, default=student.validation,
                       help="of them, validation clips (default %(default)s)")
    small.add_argument("--test", type=int, default=student.test, help="held-out test clips (default %(default)s)")
    small.add_argument("--steps", type=int, default=student.steps, help="training steps (default %(default)s)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--workers", type=int, help="processes for the pool, corpus and labels (default 2)")
    parser.add_argument("--install", action="store_true",
                        help="write the result into the package's shipped folder (replacing the shipped model)")
    parser.add_argument("--overwrite", action="store_true", help="replace a model folder this command did not write")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, prog: str = "mtqnet build-pretrained") -> int:
    args = parse_args(argv, prog)
    recipe = dataclasses.replace(TeacherRecipe(), count=args.count, epochs=args.epochs, preset=args.preset,
                                 train_clips=args.train_clips,
                                 test_noises=tuple(args.test_noises), test_systems=tuple(args.test_systems),
                                 systems=tuple(args.systems), seed=args.seed)
    # --install ships into the package's own folder of the model, replacing what is there; else work_dir/model.
    model_dir = PRETRAINED_DIR / args.name if args.install else None
    where = dict(packages_dir=args.packages_dir, clean_dir=args.clean_dir, noise_dir=args.noise_dir,
                 overwrite=args.overwrite, workers=args.workers, short_name=f"mtqnet/{args.name}")
    if args.name == "small-p835":
        # The student's corpus is the teacher's (its training settings do not matter here).
        corpus = dataclasses.replace(recipe, epochs=TeacherRecipe.epochs, preset=TeacherRecipe.preset,
                                     train_clips=TeacherRecipe.train_clips)
        build_student(args.work_dir, StudentRecipe(corpus=corpus, pool=args.pool, labelled=args.labelled,
                                                   validation=args.validation, test=args.test, steps=args.steps,
                                                   seed=args.seed), model_dir, **where)
    else:
        build_teacher(args.work_dir, recipe, model_dir, **where)
    return 0


if __name__ == "__main__":
    sys.exit(main())
