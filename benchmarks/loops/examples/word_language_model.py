"""pytorch/examples word_language_model/main.py on a synthetic corpus from a small Markov chain:
the same RNNModel (embedding -> dropout -> 2-layer LSTM -> dropout -> linear decoder, weights
uniform in +-0.1), batchify into (T, B) columns, bptt windows of 35, repackage_hidden between
windows, NLL on log-softmax outputs, clip_grad_norm_(0.25), plain SGD at lr=20, an evaluation
after every epoch and lr /= 4 when the validation loss did not improve.

One change: the example updates the weights by hand (p.data.add_(p.grad, alpha=-lr)); a watch
needs an optimizer, so this uses torch.optim.SGD(lr=20), the same update, and divides the
group's lr by 4 where the example divides its variable. Sizes shrink: 50 tokens, 64 units."""

import torch
import torch.nn.functional as F
from torch import nn

import trainwise as tw

EXPECT = []
VOCAB = 50


def markov_corpus(n: int, seed: int) -> torch.Tensor:
    """(n,) token ids: each token is followed by one of its 3 successors (60/30/10%), so the best
    possible loss is the chain's entropy, ~0.90 nats, against log(50) = 3.9 for a guess."""
    g = torch.Generator().manual_seed(0)  # the same chain for train and validation
    successors = torch.stack([torch.randperm(VOCAB, generator=g)[:3] for _ in range(VOCAB)])
    probs = torch.tensor([0.6, 0.3, 0.1])
    g = torch.Generator().manual_seed(seed)
    picks = torch.multinomial(probs, n, replacement=True, generator=g)
    out, tok = torch.empty(n, dtype=torch.long), 0
    for i in range(n):
        tok = int(successors[tok, picks[i]])
        out[i] = tok
    return out


def batchify(data, bsz):  # (N,) -> (N // bsz, bsz): each column an independent stream
    nbatch = data.size(0) // bsz
    return data[: nbatch * bsz].view(bsz, -1).t().contiguous()


def get_batch(source, i, bptt=35):  # (T, B) inputs and (T * B,) next-token targets
    seq_len = min(bptt, len(source) - 1 - i)
    return source[i : i + seq_len], source[i + 1 : i + 1 + seq_len].reshape(-1)


def repackage_hidden(h):
    return h.detach() if isinstance(h, torch.Tensor) else tuple(repackage_hidden(v) for v in h)


class RNNModel(nn.Module):
    def __init__(self, ntoken, ninp=64, nhid=64, nlayers=2, dropout=0.2):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = nn.LSTM(ninp, nhid, nlayers, dropout=dropout)
        self.decoder = nn.Linear(nhid, ntoken)
        self.nlayers, self.nhid = nlayers, nhid
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -0.1, 0.1)

    def forward(self, x, hidden):  # x: (T, B) -> log-probs (T * B, ntoken)
        emb = self.drop(self.encoder(x))
        output, hidden = self.rnn(emb, hidden)
        decoded = self.decoder(self.drop(output)).view(-1, self.decoder.out_features)
        return F.log_softmax(decoded, dim=1), hidden

    def init_hidden(self, bsz):
        w = next(self.parameters())
        return (
            w.new_zeros(self.nlayers, bsz, self.nhid),
            w.new_zeros(self.nlayers, bsz, self.nhid),
        )


def evaluate(model, source, criterion):
    model.eval()
    total, hidden = 0.0, model.init_hidden(source.size(1))
    with torch.no_grad():
        for i in range(0, source.size(0) - 1, 35):
            data, targets = get_batch(source, i)
            output, hidden = model(data, hidden)
            total += len(data) * criterion(output, targets).item()
    return total / (len(source) - 1)


def main(quick: bool = False, verbose: bool = False):
    train_data = batchify(markov_corpus(20000, seed=1), 20)  # (1000, 20): 29 windows an epoch
    val_data = batchify(markov_corpus(4000, seed=2), 10)  # (400, 10)
    model = RNNModel(VOCAB)
    criterion = nn.NLLLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=20.0)
    best_val = None
    with tw.watch(model, optimizer, verbose=verbose) as watch:
        for _epoch in range(6):  # 174 steps; val loss 3.5 (epoch 1) -> 1.23 (entropy 0.90)
            model.train()
            hidden = model.init_hidden(20)
            for i in range(0, train_data.size(0) - 1, 35):
                data, targets = get_batch(train_data, i)
                model.zero_grad()
                hidden = repackage_hidden(hidden)
                output, hidden = model(data, hidden)
                loss = criterion(output, targets)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
                optimizer.step()
                watch.log(loss=loss)
            val_loss = evaluate(model, val_data, criterion)
            watch.log_val(loss=val_loss)
            if verbose:
                print(f"val loss {val_loss:.3f} lr {optimizer.param_groups[0]['lr']}")
            if best_val is None or val_loss < best_val:
                best_val = val_loss
            else:
                for group in optimizer.param_groups:
                    group["lr"] /= 4.0
    return watch.findings


if __name__ == "__main__":
    main(verbose=True)
