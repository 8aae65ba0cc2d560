# Loads one of our copy-task or GP checkpoints into the REFERENCE model (the reference code, CPU-mended,
# in $REFERENCE) and evaluates it greedily on the reference's own data (copy: per target position).
# Usage: /usr/bin/python3 crosscheck.py RUN_DIR SEQ_LEN [QUERY_POS_OFFSET]   (GP: SEQ_LEN is not read, the third
# argument is the number of batches of 16, default 200; SEED=K picks the sampler's seed, default 123)
import os, sys, json, struct, torch
REF = os.environ.get('REFERENCE', os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '.ref-cpu'))
sys.path.insert(0, REF)
import yaml
from utils.misc import load_module
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from refmap import load_ref
from data.random_mirrored import RandomMirroredSampler

run, seq = sys.argv[1], int(sys.argv[2])
m, cfg, gp, model_type, _ = load_ref(run)
if not gp and len(sys.argv) > 3:  # shift the queries' positional encoding by an offset (ours before the fix: N/2)
    off = int(sys.argv[3]); pe = m.query_embedder[1].pe
    m.query_embedder[1].pe = torch.cat([pe[:, off:], pe[:, :off]], 1)
m.eval()
torch.manual_seed(0)
if gp:
    from data.gp import GPSampler, RBFKernel
    s = GPSampler(RBFKernel(), seed=int(__import__("os").environ.get("SEED", "123")))
    lls = []
    with torch.no_grad():
        for _ in range(int(sys.argv[3]) if len(sys.argv) > 3 else 200):
            b = s.sample(batch_size=16, max_num_points=50)
            m.reset()
            lls.append(m.predict(b).log_prob(b.yt).sum(-1).mean().item())
    print(f'{run}: reference model, our weights: target log-likelihood {sum(lls)/len(lls):.4f} over {len(lls)} batches of 16 (RBF)')
    sys.exit(0)
s = RandomMirroredSampler(sequence_length=seq, seed=123, num_chars=10)
correct = torch.zeros(seq // 2); total = 0
with torch.no_grad():
    for _ in range(8):
        b = s.sample(batch_size=64)
        m.reset()
        pred = m.predict(b)
        correct += (pred.argmax(-1) == b.yt.argmax(-1)).float().sum(0); total += 64
acc = correct / total
print(f'{run}: reference model, our weights: accuracy {acc.mean()*100:.2f}% over {total} sequences')
print('per position:', ' '.join(f'{a*100:.0f}' for a in acc.tolist()))
