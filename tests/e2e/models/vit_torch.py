"""A tiny Vision Transformer in timm's layout and names (``patch_embed.proj``, ``cls_token``,
``pos_embed`` (1, 1 + grid², D), ``blocks.{i}.norm1/attn.qkv/attn.proj/norm2/mlp.fc1/mlp.fc2``,
``norm``, ``head``), plain torch only.

``vit_32``: 32 x 32 images in 4 x 4 patches (an 8 x 8 grid), the "224" checkpoint;
``vit_64``: the same network for 64 x 64 images (a 16 x 16 grid), the "384" model;
``vit_gray``: 32 x 32 images with one channel. No file defines ``example_input``.
"""
import torch
from torch import nn

PATCH, DIM, HEADS, DEPTH, CLASSES = 4, 16, 2, 2, 5


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(DIM, 3 * DIM)
        self.proj = nn.Linear(DIM, DIM)

    def forward(self, x):
        b, t, e = x.shape
        q, k, v = (z.view(b, t, HEADS, e // HEADS).transpose(1, 2)
                   for z in self.qkv(x).split(e, dim=-1))
        att = (q @ k.transpose(-1, -2) / (e // HEADS) ** 0.5).softmax(-1)
        return self.proj((att @ v).transpose(1, 2).reshape(b, t, e))


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(DIM, 2 * DIM)
        self.fc2 = nn.Linear(2 * DIM, DIM)

    def forward(self, x):
        return self.fc2(nn.functional.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm1 = nn.LayerNorm(DIM, eps=1e-6)
        self.attn = Attention()
        self.norm2 = nn.LayerNorm(DIM, eps=1e-6)
        self.mlp = Mlp()

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, in_chans):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, DIM, PATCH, PATCH)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class VisionTransformer(nn.Module):
    def __init__(self, img_size=32, in_chans=3):
        super().__init__()
        grid = img_size // PATCH
        self.patch_embed = PatchEmbed(in_chans)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, DIM))
        self.pos_embed = nn.Parameter(torch.randn(1, 1 + grid * grid, DIM) * 0.02)
        self.blocks = nn.Sequential(*(Block() for _ in range(DEPTH)))
        self.norm = nn.LayerNorm(DIM, eps=1e-6)
        self.head = nn.Linear(DIM, CLASSES)

    def forward(self, x):
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        return self.head(self.norm(self.blocks(x))[:, 0])


def vit_32():
    return VisionTransformer(32)


def vit_64():
    return VisionTransformer(64)


def vit_gray():
    return VisionTransformer(32, in_chans=1)


def vit_rgbn():
    """Four input channels (RGB and near infrared): the RGB stem repeated and scaled by 3/4."""
    return VisionTransformer(32, in_chans=4)
