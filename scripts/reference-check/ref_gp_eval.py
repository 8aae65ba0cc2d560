# Evaluates a checkpoint the reference's gp.py wrote ($REFERENCE/results/gp/EXPID/ckpt.tar) greedily on
# the reference's GP sampler, seed 123: the batches crosscheck.py gives our checkpoints, so the two
# implementations' models are scored on the same tasks.
# Usage: /usr/bin/python3 ref_gp_eval.py EXPID tca|ca [BATCHES, default 1000]
import os, sys, torch, yaml
REF = os.environ.get('REFERENCE', os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '.ref-cpu'))
os.chdir(REF)
sys.path.insert(0, os.getcwd())
from utils.misc import load_module
from data.gp import GPSampler, RBFKernel
expid, decoder = sys.argv[1], sys.argv[2]
batches = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
cfg = yaml.safe_load(open('configs/gp.yaml'))
cfg['decoder_type'] = decoder
m = getattr(load_module('models/retreever.py'), 'Retreever')(**cfg)
ckpt = torch.load(f'results/gp/{expid}/ckpt.tar', map_location='cpu')
m.load_state_dict(ckpt['model'])
m.eval()
torch.manual_seed(0)
s = GPSampler(RBFKernel(), seed=123)
lls = []
with torch.no_grad():
    for _ in range(batches):
        b = s.sample(batch_size=16, max_num_points=50)
        m.reset()
        lls.append(m.predict(b).log_prob(b.yt).sum(-1).mean().item())
print(f'{expid}: reference model, reference weights: target log-likelihood {sum(lls)/len(lls):.4f} over {len(lls)} batches of 16 (RBF)')
