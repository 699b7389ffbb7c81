"""A torch text encoder (nn.Embedding, stacked nn.LSTM, bidirectional nn.LSTM, nn.GRU; all
batch_first) as a weightmap target or source. Its Keras twin is built in
tests/e2e/test_exact_recurrent.py: Embedding, LSTM, LSTM, Bidirectional(LSTM), GRU."""
import torch
from torch import nn

VOCAB, EMBED, UNITS, BI_UNITS, GRU_UNITS, STEPS = 50, 8, 6, 5, 4, 7


class Encoder(nn.Module):
    def __init__(self, padding_idx=None):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, EMBED, padding_idx=padding_idx)
        self.lstm = nn.LSTM(EMBED, UNITS, num_layers=2, batch_first=True)
        self.bilstm = nn.LSTM(UNITS, BI_UNITS, batch_first=True, bidirectional=True)
        self.gru = nn.GRU(2 * BI_UNITS, GRU_UNITS, batch_first=True)

    def forward(self, tokens):
        x = self.lstm(self.embed(tokens))[0]
        x = self.bilstm(x)[0]
        return self.gru(x)[0]


def keras_twin():
    """Freshly initialised: every weight must come from the port."""
    torch.manual_seed(11)
    return Encoder(padding_idx=0).eval()


def randomised(seed=3):
    """Random weights with non-zero biases (a source for torch -> Keras / ONNX)."""
    torch.manual_seed(seed)
    model = Encoder().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.empty_like(p).uniform_(-0.5, 0.5) if "bias" in name
                    else torch.randn_like(p) * 0.4)
    return model


example_input = torch.zeros(2, STEPS, dtype=torch.long)
