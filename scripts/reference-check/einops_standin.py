# A stand-in for einops.rearrange / repeat, only the patterns the reference code uses (Debian has no einops).
import re
import torch

def _parse(side):
    toks = re.findall(r"\(|\)|\.\.\.|[A-Za-z_][A-Za-z0-9_]*|\d+", side)
    out, group = [], None
    for t in toks:
        if t == "(":
            group = []
        elif t == ")":
            out.append(tuple(group)); group = None
        else:
            (group if group is not None else out).append(t)
    return out

def _apply(x, pattern, sizes, is_repeat):
    left, right = [s.strip() for s in pattern.split("->")]
    L, R = _parse(left), _parse(right)
    sizes = dict(sizes)
    n_ell = x.dim() - (len(L) - (1 if "..." in L else 0))
    # expand ellipsis names
    def expand(items):
        res = []
        for it in items:
            if it == "...":
                res.extend(f"...{i}" for i in range(n_ell))
            elif isinstance(it, tuple):
                g = []
                for a in it:
                    g.extend([f"...{i}" for i in range(n_ell)] if a == "..." else [a])
                res.append(tuple(g))
            else:
                res.append(it)
        return res
    L, R = expand(L), expand(R)
    assert len(L) == x.dim(), (pattern, x.shape)
    elem = []
    for it, n in zip(L, x.shape):
        if isinstance(it, tuple):
            known = 1; unknown = None
            for a in it:
                if a in sizes: known *= sizes[a]
                else: unknown = a
            if unknown is not None: sizes[unknown] = n // known
            elem.extend(it)
        else:
            if it != "1": sizes[it] = n
            elem.append(it)
    x = x.reshape([sizes[a] if a != "1" else 1 for a in elem])
    # drop literal 1 axes on the left
    keep = [i for i, a in enumerate(elem) if a != "1"]
    x = x.reshape([x.shape[i] for i in keep]); elem = [elem[i] for i in keep]
    r_elem = []
    for it in R:
        r_elem.extend(it if isinstance(it, tuple) else [it])
    r_names = [a for a in r_elem if a != "1"]
    new = [a for a in r_names if a not in elem]
    for a in new:
        x = x.unsqueeze(-1); elem.append(a)
    x = x.permute([elem.index(a) for a in r_names])
    if new:
        shape = [sizes[a] for a in r_names]
        x = x.expand(shape)
    final = []
    for it in R:
        if isinstance(it, tuple):
            n = 1
            for a in it: n *= sizes[a]
            final.append(n)
        elif it == "1":
            final.append(1)
        else:
            final.append(sizes[it])
    return x.reshape(final)

def rearrange(x, pattern, **sizes):
    return _apply(x, pattern, sizes, False)

def repeat(x, pattern, **sizes):
    return _apply(x, pattern, sizes, True)
