"""A tiny BERT in two spellings, plain torch only (no ``transformers``).

``hf_bert``: Hugging Face's ``BertForSequenceClassification`` layout and names
(``bert.embeddings.word_embeddings``, ``bert.encoder.layer.{i}.attention.self.query`` ...,
``attention.output.LayerNorm``, ``intermediate.dense``, ``output.dense``, ``bert.pooler.dense``,
``classifier``), post-LayerNorm blocks, LayerNorm epsilon 1e-12 as BERT's ``config.json`` says
(``layer_norm_eps``).

``bert_fused``: the same network written by hand: other names, a fused ``qkv`` Linear (3E, E)
with bias, LayerNorms with epsilon 1e-12; ``bert_fused_eps5`` the same with torch's default
epsilon 1e-5. No file defines ``example_input``.
"""
import torch
from torch import nn

VOCAB, DIM, N_HEAD, N_LAYER, HIDDEN, MAX_POS, TYPES, LABELS = 40, 16, 2, 12, 32, 16, 2, 3
BERT_EPS = 1e-12


def attend(q, k, v):
    b, t, e = q.shape
    q, k, v = (z.view(b, t, N_HEAD, e // N_HEAD).transpose(1, 2) for z in (q, k, v))
    scores = q @ k.transpose(-1, -2) / (e // N_HEAD) ** 0.5
    return (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, t, e)


# ---- Hugging Face layout -----------------------------------------------------------------------

class BertEmbeddings(nn.Module):
    def __init__(self):
        super().__init__()
        self.word_embeddings = nn.Embedding(VOCAB, DIM)
        self.position_embeddings = nn.Embedding(MAX_POS, DIM)
        self.token_type_embeddings = nn.Embedding(TYPES, DIM)
        self.LayerNorm = nn.LayerNorm(DIM, eps=BERT_EPS)

    def forward(self, ids):
        pos = torch.arange(ids.shape[1])
        x = self.word_embeddings(ids) + self.position_embeddings(pos) + \
            self.token_type_embeddings(torch.zeros_like(ids))
        return self.LayerNorm(x)


class BertSelfAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.query = nn.Linear(DIM, DIM)
        self.key = nn.Linear(DIM, DIM)
        self.value = nn.Linear(DIM, DIM)

    def forward(self, x):
        return attend(self.query(x), self.key(x), self.value(x))


class BertSelfOutput(nn.Module):
    def __init__(self):
        super().__init__()
        self.dense = nn.Linear(DIM, DIM)
        self.LayerNorm = nn.LayerNorm(DIM, eps=BERT_EPS)

    def forward(self, h, x):
        return self.LayerNorm(self.dense(h) + x)


class BertAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.self = BertSelfAttention()
        self.output = BertSelfOutput()

    def forward(self, x):
        return self.output(self.self(x), x)


class BertIntermediate(nn.Module):
    def __init__(self):
        super().__init__()
        self.dense = nn.Linear(DIM, HIDDEN)

    def forward(self, x):
        return nn.functional.gelu(self.dense(x))


class BertOutput(nn.Module):
    def __init__(self):
        super().__init__()
        self.dense = nn.Linear(HIDDEN, DIM)
        self.LayerNorm = nn.LayerNorm(DIM, eps=BERT_EPS)

    def forward(self, h, x):
        return self.LayerNorm(self.dense(h) + x)


class BertLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.attention = BertAttention()
        self.intermediate = BertIntermediate()
        self.output = BertOutput()

    def forward(self, x):
        x = self.attention(x)
        return self.output(self.intermediate(x), x)


class BertEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.ModuleList(BertLayer() for _ in range(N_LAYER))

    def forward(self, x):
        for layer in self.layer:
            x = layer(x)
        return x


class BertPooler(nn.Module):
    def __init__(self):
        super().__init__()
        self.dense = nn.Linear(DIM, DIM)

    def forward(self, x):
        return torch.tanh(self.dense(x[:, 0]))


class BertModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.embeddings = BertEmbeddings()
        self.encoder = BertEncoder()
        self.pooler = BertPooler()

    def forward(self, ids):
        return self.pooler(self.encoder(self.embeddings(ids)))


class BertForSequenceClassification(nn.Module):
    def __init__(self):
        super().__init__()
        self.bert = BertModel()
        self.classifier = nn.Linear(DIM, LABELS)

    def forward(self, ids):
        return self.classifier(self.bert(ids))


# ---- hand-written, fused qkv -------------------------------------------------------------------

class Embed(nn.Module):
    def __init__(self, eps):
        super().__init__()
        self.tok = nn.Embedding(VOCAB, DIM)
        self.pos = nn.Embedding(MAX_POS, DIM)
        self.seg = nn.Embedding(TYPES, DIM)
        self.norm = nn.LayerNorm(DIM, eps=eps)

    def forward(self, ids):
        x = self.tok(ids) + self.pos(torch.arange(ids.shape[1]))
        return self.norm(x + self.seg(torch.zeros_like(ids)))


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(DIM, 3 * DIM)
        self.proj = nn.Linear(DIM, DIM)

    def forward(self, x):
        return self.proj(attend(*self.qkv(x).split(DIM, dim=-1)))


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(DIM, HIDDEN)
        self.fc2 = nn.Linear(HIDDEN, DIM)

    def forward(self, x):
        return self.fc2(nn.functional.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, eps):
        super().__init__()
        self.attn = Attention()
        self.norm1 = nn.LayerNorm(DIM, eps=eps)
        self.mlp = Mlp()
        self.norm2 = nn.LayerNorm(DIM, eps=eps)

    def forward(self, x):
        x = self.norm1(x + self.attn(x))
        return self.norm2(x + self.mlp(x))


class Encoder(nn.Module):
    def __init__(self, eps=BERT_EPS):
        super().__init__()
        self.emb = Embed(eps)
        self.blocks = nn.ModuleList(Block(eps) for _ in range(N_LAYER))
        self.pool = nn.Linear(DIM, DIM)
        self.head = nn.Linear(DIM, LABELS)

    def forward(self, ids):
        x = self.emb(ids)
        for block in self.blocks:
            x = block(x)
        return self.head(torch.tanh(self.pool(x[:, 0])))


hf_bert = BertForSequenceClassification
bert_fused = Encoder


def bert_fused_eps5():
    return Encoder(eps=1e-5)
