"""hfnn's benchmarks: ``python -m bench [--quick] [--only NAME ...] [--out DIR]`` from the repository root.

Runs every benchmark and writes ``RESULTS.md`` with PNG plots (see :mod:`bench.run_all`):

1. ``cnn_rnn``: the seed note's CNN-vs-RNN table (parameters, forward+backward time against sequence
   length, accuracy on Rotten Tomatoes);
2. ``activations``: identity at depth 1 and 4 against tanh and relu at depth 4 (MLP on Rotten Tomatoes);
3. ``attention``: seq2seq without attention, with Bahdanau or Luong attention, and the Transformer on
   CMUdict (WER/PER overall and by word length);
4. ``lm``: RNN (tanh, GRU, LSTM) and Transformer language models under one time budget
   (``bench/lm_budget.py``);
5. ``transformer_speed``: the Transformer LM against ``transformers.GPT2LMHeadModel``
   (``bench/bench_transformer_speed.py``);
6. ``rnn_overhead``: the RNN LM against a plain PyTorch model with the same weights;
7. ``generation``: time per generated token against the number of new tokens, with and without cache;
8. the peak memory of every training run above.
"""
