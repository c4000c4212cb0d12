#!/usr/bin/env python
"""Train or evaluate an sgg_d2 model (detector or scene-graph model) from a config file.

Same flags as every Detectron2 project::

    python train_net.py --config-file configs/synthetic/faster_rcnn_R18_FPN_detector.yaml
    python train_net.py --config-file CONFIG --eval-only MODEL.WEIGHTS out/model_final.pth
    python train_net.py --config-file CONFIG --num-gpus 8 --resume OUTPUT_DIR out/
    python train_net.py --config-file CONFIG --resume-from-last-good OUTPUT_DIR out/

The work lives in :mod:`sgg_d2.engine`; this file only parses arguments and launches.
"""

# isort: off
import sgg_d2  # noqa: F401  (first: installs the detectron2._C stand-in when needed)
from detectron2.engine import default_argument_parser, launch

# isort: on
from sgg_d2.engine import main
from sgg_d2.engine.distributed import check_launch


def cli():
    parser = default_argument_parser()
    parser.add_argument(
        "--resume-from-last-good",
        action="store_true",
        help="--resume, and if the last checkpoint is damaged resume from the newest intact "
        "earlier one (config SOLVER.RESUME_FROM_LAST_GOOD)",
    )
    args = parser.parse_args()
    if args.resume_from_last_good:
        args.resume = True
        args.opts = [*args.opts, "SOLVER.RESUME_FROM_LAST_GOOD", "True"]
    print("Command Line Args:", args)
    check_launch(args.num_gpus, args.num_machines)  # a clear message, not an assert
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )


if __name__ == "__main__":
    cli()
