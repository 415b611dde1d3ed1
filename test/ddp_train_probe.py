"""Started by torchrun from test_distributed_training.py: each process builds the trainer
`dpros train` builds from the same arguments, trains, then reports its weights and every file it
wrote (seen through Python's audit hooks) under OUT."""
import json
import os
import sys

OUT, REPORT = os.path.abspath(sys.argv[1]), sys.argv[2]
writes = []


def _audit(event, args):
    path = None
    if event == "open" and isinstance(args[2], int) and args[2] & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
        path = args[0]
    elif event in ("os.rename", "os.mkdir", "os.remove"):
        path = args[1] if event == "os.rename" else args[0]
    if isinstance(path, (str, bytes, os.PathLike)) and os.path.abspath(os.fsdecode(path)).startswith(OUT):
        writes.append([event, os.fsdecode(path)])


sys.addaudithook(_audit)

from safetensors.torch import save_file  # noqa: E402

from diffusion_policy_ros.cli import train  # noqa: E402
from diffusion_policy_ros.cli.main import build_parser  # noqa: E402
from diffusion_policy_ros.training.distributed import Distributed  # noqa: E402

parser, leaves = build_parser()
train.add_arguments(leaves[("train",)])
args = parser.parse_args(["train", *sys.argv[3:], "--out", OUT])
distributed = Distributed.from_environment(args.device)
trainer = train.make_trainer(args, distributed)
trainer.train(progress=False)
tensors = {f"model/{k}": v for k, v in trainer.policy.state_dict().items()}
tensors.update({f"ema/{k}": v for k, v in trainer.ema.model.state_dict().items()})
save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(REPORT, f"rank{distributed.rank}.safetensors"))
with open(os.path.join(REPORT, f"rank{distributed.rank}.json"), "w") as f:
    json.dump({"world_size": distributed.world_size, "step": trainer.step, "writes": writes,
               "batch_rng_state": trainer.rng.bit_generator.state["state"]["state"]}, f)
distributed.close()
