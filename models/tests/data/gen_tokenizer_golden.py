#!/usr/bin/env python3
"""Regenerates tokenizer_golden.json: token ids for edge-case strings, computed by an
independent Python re-implementation of llama.cpp's tokenizers (byte-level BPE with the
`smollm`/`qwen2` splits, SentencePiece bigram merging by score). It reproduces every
prompt_tokens of the shared reference files, which llama.cpp produced.

usage: gen_tokenizer_golden.py MODELS_DIR > tokenizer_golden.json   (needs `pip install regex`)
"""
import sys, json, regex, heapq

GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
QWEN2 = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
PRE = {'smollm': [r"\p{N}", GPT2], 'qwen2': [QWEN2]}

def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~")+1))+list(range(ord("¡"), ord("¬")+1))+list(range(ord("®"), ord("ÿ")+1))
    cs = bs[:]; n = 0
    for b in range(256):
        if b not in bs: bs.append(b); cs.append(256+n); n += 1
    return dict(zip(bs, map(chr, cs)))
B2U = bytes_to_unicode()

def regex_split(text, regexes):
    frags = [text]
    for r in regexes:
        out = []
        for f in frags:
            pos = 0
            for m in regex.finditer(r, f):
                if m.start() > pos: out.append(f[pos:m.start()])
                if m.end() > m.start(): out.append(m.group())
                pos = m.end()
            if pos < len(f): out.append(f[pos:])
        frags = out
    return frags

def partition(text, specials, parse_special, types):
    # specials: list of (id, text) sorted by len desc; llama.cpp order
    frags = [('raw', text)] if text else []
    for tid, st in specials:
        if not parse_special and types[tid] in (2, 3): continue
        out = []
        for kind, f in frags:
            if kind != 'raw': out.append((kind, f)); continue
            while True:
                i = f.find(st)
                if i < 0: out.append(('raw', f)) if f else None; break
                if i > 0: out.append(('raw', f[:i]))
                out.append(('tok', tid))
                f = f[i+len(st):]
        frags = out
    return frags

class BPE:
    def __init__(self, m):
        self.tokens = m['tokenizer.ggml.tokens']; self.types = m['tokenizer.ggml.token_type']
        self.t2i = {t: i for i, t in enumerate(self.tokens)}
        self.ranks = {}
        for i, mm in enumerate(m['tokenizer.ggml.merges']):
            p = mm.find(' ', 1); self.ranks[(mm[:p], mm[p+1:])] = i
        self.regexes = PRE[m['tokenizer.ggml.pre']]
        sp = [(i, t) for i, t in enumerate(self.tokens) if self.types[i] in (2, 3, 4)]
        self.specials = sorted(sp, key=lambda x: -len(x[1].encode()))
    def word(self, w):
        syms = list(w)
        while len(syms) > 1:
            best = None
            for i in range(len(syms)-1):
                r = self.ranks.get((syms[i], syms[i+1]))
                if r is not None and (best is None or r < best[0]): best = (r, i)
            if best is None: break
            i = best[1]; syms[i:i+2] = [syms[i]+syms[i+1]]
        out = []
        for s in syms:
            if s in self.t2i: out.append(self.t2i[s])
            else: out += [self.t2i[c] for c in s if c in self.t2i]
        return out
    def encode(self, text, parse_special=True):
        out = []
        for kind, f in partition(text, self.specials, parse_special, self.types):
            if kind == 'tok': out.append(f); continue
            for w in regex_split(f, self.regexes):
                out += self.word(''.join(B2U[b] for b in w.encode()))
        return out

class SPM:
    def __init__(self, m):
        self.tokens = m['tokenizer.ggml.tokens']; self.types = m['tokenizer.ggml.token_type']
        self.scores = m['tokenizer.ggml.scores']
        self.t2i = {t: i for i, t in enumerate(self.tokens)}
        sp = [(i, t) for i, t in enumerate(self.tokens) if self.types[i] in (2, 3, 4)]
        self.specials = sorted(sp, key=lambda x: -len(x[1].encode()))
        self.bos = m['tokenizer.ggml.bos_token_id']
    def frag(self, text):
        text = text.replace(' ', '\u2581')
        syms = list(text)  # (text) linked list
        n = len(syms); prev = list(range(-1, n-1)); nxt = list(range(1, n+1)); nxt[-1] = -1 if n else None
        alive = [True]*n
        heap = []; rev = {}
        def add(l, r):
            if l < 0 or r < 0: return
            t = syms[l] + syms[r]
            tid = self.t2i.get(t)
            if tid is None: return
            heapq.heappush(heap, (-self.scores[tid], l, r, len(t)))
            rev[t] = (l, r)
        for i in range(1, n): add(i-1, i)
        while heap:
            _, l, r, size = heapq.heappop(heap)
            if not alive[l] or not alive[r] or len(syms[l]) + len(syms[r]) != size or nxt[l] != r: continue
            syms[l] = syms[l] + syms[r]; alive[r] = False
            nxt[l] = nxt[r]
            if nxt[r] >= 0: prev[nxt[r]] = l
            add(prev[l], l); add(l, nxt[l])
        out = []
        i = 0 if n else -1
        while i != -1:
            s = syms[i]
            if s in self.t2i: out.append(self.t2i[s])
            else: out += [self.t2i['<0x%02X>' % b] for b in s.encode()]
            i = nxt[i]
        return out
    def encode(self, text, parse_special=True):
        out = [self.bos]
        for kind, f in partition(text, self.specials, parse_special, self.types):
            if kind == 'tok': out.append(f)
            else: out += self.frag(f)
        return out


def read_gguf_metadata(path):
    """The key/value metadata of a GGUF file (v2/v3, little-endian)."""
    import struct
    f = open(path, 'rb')
    def rd(fmt):
        return struct.unpack('<' + fmt, f.read(struct.calcsize(fmt)))[0]
    def rstr():
        return f.read(rd('Q')).decode('utf-8', 'replace')
    scalar = {0: 'B', 1: 'b', 2: 'H', 3: 'h', 4: 'I', 5: 'i', 6: 'f', 7: '?', 10: 'Q', 11: 'q', 12: 'd'}
    def rval(t):
        if t == 8:
            return rstr()
        if t == 9:
            et, n = rd('I'), rd('Q')
            return [rval(et) for _ in range(n)]
        return rd(scalar[t])
    assert f.read(4) == b'GGUF'
    rd('I'); rd('Q'); nkv = rd('Q')
    meta = {}
    for _ in range(nkv):
        k = rstr(); meta[k] = rval(rd('I'))
    return meta

CASES = json.load(open(__file__.replace('gen_tokenizer_golden.py', 'tokenizer_golden_cases.json')))
MODELS = {
    'smollm2': 'SmolLM2-135M-Instruct.Q4_1.gguf',
    'qwen2.5-coder': 'qwen2.5-coder-0.5b-instruct-q4_k_m.gguf',
    'gemma3': 'gemma-3-270m-q4_k_m.gguf',
}

if __name__ == '__main__':
    out = {}
    for name, file in MODELS.items():
        m = read_gguf_metadata(sys.argv[1] + '/' + file)
        tok = SPM(m) if m['tokenizer.ggml.model'] == 'llama' else BPE(m)
        out[name] = [tok.encode(c) for c in CASES]
    print(json.dumps({'cases': CASES, 'ids': out}, ensure_ascii=False))
