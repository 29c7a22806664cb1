import os

import torch

# Two cores: one intra-op thread per test process keeps timings stable and avoids oversubscription.
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
