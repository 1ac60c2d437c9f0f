"""The stages: each takes the resolved Config at the top and hands explicit values down.

Below these functions nothing sees the Config: the simulator, the data readers, the
objectives, the training loop, the samplers, the metrics and painting get plain arguments.
The DVC stages (generate → prepare → pretrain → train → evaluate → register) are declared
once, with their params, deps and outs, in halocm.pipeline.
"""
