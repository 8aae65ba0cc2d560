# The reference's loss terms and gradients for one batch with our checkpoint's weights,
# dropout 0, greedy walk in training; then ours (gradcheck binary) on the same batch; compare.
import os, sys, json, struct, subprocess, torch
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from refmap import load_ref
run = sys.argv[1]; B = int(sys.argv[2]) if len(sys.argv) > 2 else 8
out = os.environ.get('OUT', '/tmp/reference-check'); os.makedirs(out, exist_ok=True)
m, cfg, gp, model_type, name_map = load_ref(run)
for mod in m.modules():
    if isinstance(mod, torch.nn.Dropout): mod.p = 0.0
torch.multinomial = lambda p, n: p.max(-1)[1].unsqueeze(-1)  # greedy walk in training, as ours with Retrieval::Greedy
m.train()
torch.manual_seed(int(os.environ.get('SEED', '1')))
if gp:
    from data.gp import GPSampler, RBFKernel
    b = GPSampler(RBFKernel()).sample(batch_size=B, max_num_points=50)
    N, M = b.xc.shape[1], b.xt.shape[1]
    b.xc.contiguous().numpy().tofile(out + '/xc.bin'); b.yc.contiguous().numpy().tofile(out + '/yc.bin')
    b.xt.contiguous().numpy().tofile(out + '/xt.bin'); b.yt.contiguous().numpy().tofile(out + '/yt.bin')
    dx = 1
else:
    from data.random_mirrored import RandomMirroredSampler
    b = RandomMirroredSampler(sequence_length=cfg['seq_len'], seed=int(os.environ.get('SEED', '1')), num_chars=10).sample(batch_size=B)
    N, M = b.xc.shape[1], b.xt.shape[1]
    b.xc.contiguous().numpy().tofile(out + '/xc.bin'); b.xt.contiguous().numpy().tofile(out + '/xt.bin')
    b.yt.argmax(-1).long().contiguous().numpy().tofile(out + '/yt.bin')
    dx = 12
def read_safetensors(path):  # (header, name -> float32 tensor)
    f = open(path, 'rb'); n = struct.unpack('<Q', f.read(8))[0]; head = json.loads(f.read(n)); raw = f.read()
    def T(name):
        h = head[name]; a, c = h['data_offsets']
        return torch.frombuffer(bytearray(raw[a:c]), dtype=torch.float32).view(h['shape'])
    return head, T
def compare(path, measure):
    """Every mapped tensor of ours against the reference's parameter: measure(ours, ref) -> (number,
    text), where ours(suffix='') reads our tensor name + suffix from path, cut to the reference's rows.
    Prints the 12 largest numbers and returns them all (inf where a side has no gradient)."""
    head, T = read_safetensors(path)
    rows = []
    for name, ref, rows_ in name_map:
        label = name + ('' if rows_ is None else f'[{rows_.start}:{rows_.stop}]')
        if name not in head:
            rows.append((float('inf'), label, 'no gradient in ours')); continue
        value, text = measure(lambda suffix='': T(name + suffix) if rows_ is None else T(name + suffix)[rows_], ref)
        rows.append((value, label, text))
    for r_ in sorted(rows, key=lambda x: x[0], reverse=True)[:12]: print('  ', *r_[1:])
    return [r_[0] for r_ in rows]
def ours():  # the harness on the same batch: prints its loss terms (and writes its gradients)
    r = subprocess.run([os.environ.get('GRADCHECK', 'build/scripts/reference-check/retreever-gradcheck'),
                        run + '/checkpoint.safetensors', out, str(B), str(N), str(M), str(dx)], capture_output=True, text=True)
    print('ours:', r.stdout.replace('\n', ' ').strip(), r.stderr[-500:])

if os.environ.get('DROPOUT_REPS'):
    reps = int(os.environ['DROPOUT_REPS'])
    if not cfg['dropout'] > 0 or reps < 2:
        sys.exit(f"DROPOUT_REPS needs a run trained with dropout (this one has {cfg['dropout']}) and at least 2 draws; "
                 "without dropout every draw is the same: leave DROPOUT_REPS out")
    for mod in m.modules():
        if isinstance(mod, torch.nn.Dropout): mod.p = cfg['dropout']
    # the tree's own attention keeps p = 0 (query_model), as built
    if model_type == 'tca': m.processor.memory_block.query_model.fn.dropout.p = 0.0
    part = os.environ.get('DROPOUT_PARTS')  # attn | ff | pe: that part alone
    if part:
        from models.attention_modules import Attention, FeedForward
        from models.positional_encoding import PositionalEncoding
        for mod in m.modules():
            kind = 'attn' if isinstance(mod, Attention) else 'ff' if isinstance(mod, FeedForward) else 'pe' if isinstance(mod, PositionalEncoding) else None
            if kind and kind != part:
                for d in mod.modules():
                    if isinstance(d, torch.nn.Dropout): d.p = 0.0
    tot, tca, ca, rl = [], [], [], []
    grads = bool(os.environ.get('GRADS'))  # also the gradients' means over the masks, against ours
    params = dict(m.named_parameters()); gsum = {k: 0 for k in params}; gsq = {k: 0 for k in params}
    with torch.set_grad_enabled(grads):
        for _ in range(reps):
            m.zero_grad(); m.reset(); o = m(b); tot.append(float(o.loss)); tca.append(float(o.get('tca_loss', o.loss))); ca.append(float(o.get('tca_leaf_loss', 0))); rl.append(float(o.get('rl_loss', 0)))
            if grads:
                o.loss.backward()
                for k, p in params.items():
                    if p.grad is not None: g = p.grad.double(); gsum[k] = gsum[k] + g; gsq[k] = gsq[k] + g * g
    Tot = torch.tensor(tot); C = torch.tensor(tca)
    print(f"reference mean ca {sum(ca)/reps:.5f} mean rl {sum(rl)/reps:.5f}")
    print(f"reference dropout {cfg['dropout']}: mean total {Tot.mean():.5f} +- {Tot.std()/reps**0.5:.5f}, mean tca {C.mean():.5f} +- {C.std()/reps**0.5:.5f}")
    ours()
    if grads:  # per tensor: |mean ours - mean reference| against the two means' standard errors
        spread = []  # and the ratio of the standard errors, filled by z_score
        def z_score(ours_of, ref):
            if not isinstance(gsum[ref], torch.Tensor): return float('inf'), 'no gradient in the reference'
            mr = gsum[ref] / reps; ser = ((gsq[ref] / reps - mr * mr).clamp_min(0) * reps / (reps - 1) / reps).sqrt()
            mo, seo = ours_of().double(), ours_of('.se').double()
            z = (mo - mr).norm().item() / max((ser.norm() ** 2 + seo.norm() ** 2).sqrt().item(), 1e-30)
            # The spread too: masks drawn with another structure (one mask shared by rows or heads,
            # say) leave the means equal and change the standard errors.
            spread.append(seo.norm().item() / max(ser.norm().item(), 1e-30))
            return z, f'z {z:.2f}, |mean diff| / |mean| {(mo - mr).norm().item() / max(mr.norm().item(), 1e-30):.3f}, se ours / reference {spread[-1]:.3f}'
        values = compare(out + '/grads_mean.safetensors', z_score)
        zs = [v for v in values if v != float('inf')]
        print(f'mean gradients over {reps} masks: z (difference over its standard error; about 1 where the means agree) '
              f'median {sorted(zs)[len(zs) // 2]:.2f}, worst {max(zs):.2f} over {len(values)} tensors')
        spread.sort()
        print(f'their spread: standard error ours / reference, median {spread[len(spread) // 2]:.3f}, '
              f'from {spread[0]:.3f} to {spread[-1]:.3f} (about 1 where the masks vary alike)')
    sys.exit(0)
m.reset()
outs = m(b)
outs.loss.backward()
print('reference:', {k: round(float(v), 6) for k, v in outs.items() if k in ('loss', 'tca_loss', 'tca_leaf_loss', 'rl_loss', 'entropy_bonus', 'ce', 'tar_ll')})
ours()
params = dict(m.named_parameters())
def relative(ours_of, ref):
    rg = params[ref].grad
    if rg is None: return float('inf'), 'no gradient in the reference'
    rel = (ours_of() - rg).norm().item() / max(rg.norm().item(), 1e-12)
    return rel, f'{rel:.2e} (|g| {rg.norm().item():.3e})'
values = compare(out + '/grads.safetensors', relative)
print(f'worst relative gradient difference: {max([v for v in values if v != float("inf")], default=0):.3e} over {len(values)} tensors')
