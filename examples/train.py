"""A tiny "training" script: reads its parameters from mrunner and writes a result to its own folder."""

import json
import math
import os
import sys

from mrunner import get_configuration

config = get_configuration(print_diagnostics=True)
loss = 1.0
for step in range(config.get("steps", 100)):
    loss *= 1 - config.lr * math.exp(-step / 50)
result = {"lr": config.lr, "seed": config.get("seed"), "final_loss": loss, "argv": sys.argv[1:]}
print(json.dumps(result))
with open(os.path.join(os.environ["MRUNNER_EXPERIMENT_DIR"], "result.json"), "w") as stream:
    json.dump(result, stream)
