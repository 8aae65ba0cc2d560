# Our checkpoint's weights in the reference's model (the reference code, CPU-mended, in $REFERENCE).
import os, sys, json, struct, torch
REF = os.environ.get('REFERENCE', os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '.ref-cpu'))
sys.path.insert(0, REF)
import yaml
from utils.misc import load_module

def load_ref(run):
    """The reference's model with our checkpoint's weights: (model, our config, is GP, our model name,
    [(our parameter, reference parameter, row slice or None)])."""
    f = open(run + '/checkpoint.safetensors', 'rb'); n = struct.unpack('<Q', f.read(8))[0]
    head = json.loads(f.read(n)); base = 8 + n
    raw = open(run + '/checkpoint.safetensors', 'rb').read()
    def T(name):
        h = head[name]; a, b = h['data_offsets']
        return torch.frombuffer(bytearray(raw[base + a:base + b]), dtype=torch.float32).view(h['shape']).clone()
    cfg = json.loads(head['__metadata__']['config']) if isinstance(head['__metadata__']['config'], str) else head['__metadata__']['config']
    model_type = cfg['model']
    cls = getattr(load_module(os.path.join(REF, "models/retreever.py")), "Retreever")
    gp = cfg['task'] == 'gp'
    if gp:
        rc = yaml.safe_load(open(os.path.join(REF, "configs/gp.yaml")))
        rc.update(dict(num_layers=cfg['encoder_layers'], decoder_type=model_type, bound_std=cfg['bound_std']))
    else:
        rc = yaml.safe_load(open(os.path.join(REF, "configs/copy_task.yaml")))
        rc.update(dict(encoder_type="constant", dropout=cfg['dropout'], decoder_type=model_type))
    m = cls(**rc)
    sd = m.state_dict()
    new = {}
    MAP = []  # (our name, ref name, row slice or None)
    def put(ref, ours, rows=None):
        t = T(ours)
        new[ref] = t if rows is None else t[rows]
        MAP.append((ours, ref, rows))
    def mlp(ours, ref, depth):
        for i in range(depth):
            put(f'{ref}.{2*i}.weight', f'{ours}.layers.{i}.weight'); put(f'{ref}.{2*i}.bias', f'{ours}.layers.{i}.bias')
    if gp:
        mlp('embedder', 'embedder', 4); mlp('query_embedder', 'query_embedder', 4)
    else:
        mlp('embedder', 'embedder.0', 4); mlp('context_position', 'embedder.2', 3)
        mlp('query_embedder', 'query_embedder.0', 4); mlp('query_position', 'query_embedder.2', 3)
    mlp('head', 'predictor', 2)
    def attn(ours, ref):
        D = T(ours + '.to_kv.weight').shape[1]
        put(ref + '.to_q.weight', ours + '.to_q.weight'); put(ref + '.to_k.weight', ours + '.to_kv.weight', slice(0, D))
        put(ref + '.to_v.weight', ours + '.to_kv.weight', slice(D, 2 * D))
        put(ref + '.to_out.weight', ours + '.to_out.weight'); put(ref + '.to_out.bias', ours + '.to_out.bias')
    def ln(ours, ref):
        put(ref + '.weight', ours + '.weight'); put(ref + '.bias', ours + '.bias')
    def ff(ours, ref):
        for a, b in (('expand', 0), ('contract', 2)):
            put(f'{ref}.net.{b}.weight', f'{ours}.{a}.weight'); put(f'{ref}.net.{b}.bias', f'{ours}.{a}.bias')
    for i in range(cfg['encoder_layers']):
        a, r = f'encoder.layers.{i}', f'encoder.layers.{i}'
        attn(a + '.attn', r + '.dataset_self_attn.fn'); ln(a + '.norm_attn', r + '.dataset_self_attn.norm')
        ff(a + '.ff', r + '.ff.fn'); ln(a + '.norm_ff', r + '.ff.norm')
    if model_type == 'tca':
        a, r = 'decoder.aggregator.encoder.layers.0', 'processor.memory_block.aggregator.encoder.layers.0'
        attn(a + '.attn', r + '.dataset_self_attn.fn'); ln(a + '.norm_attn', r + '.dataset_self_attn.norm')
        ff(a + '.ff', r + '.ff.fn'); ln(a + '.norm_ff', r + '.ff.norm')
        r = 'processor.memory_block'
        attn('decoder.block.attention', r + '.query_model.fn'); ln('decoder.block.norm_q', r + '.query_model.norm')
        ff('decoder.block.ff', r + '.query_ff.fn'); ln('decoder.block.norm_ff', r + '.query_ff.norm')
    else:
        r = 'processor.memory_block'
        attn('decoder.block.attention', r + '.cross_attention.fn'); ln('decoder.block.norm_q', r + '.cross_attention.norm')
        ff('decoder.block.ff', r + '.cross_attention_ff.fn'); ln('decoder.block.norm_ff', r + '.cross_attention_ff.norm')
    missing = [k for k in sd if k not in new and not k.endswith('.pe') and not k.startswith('norm.')]
    assert not missing, missing
    for k in sd:
        if k in new: assert sd[k].shape == new[k].shape, (k, sd[k].shape, new[k].shape)
        else: new[k] = sd[k]
    m.load_state_dict(new)
    return m, cfg, gp, model_type, MAP
