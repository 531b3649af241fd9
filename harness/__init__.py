"""FERbench harness: table specs -> cells -> results -> frame -> statistics -> report."""
import warnings

# fvcore's import calls torch.jit.script, which torch 2.14 deprecates: noise in every command.
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
