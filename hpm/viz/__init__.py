"""Pictures of a run: training curves (``plot``) and Figure-2-style patch panels (``panels``).

Both draw on ``matplotlib.figure.Figure`` with the Agg canvas (no pyplot, no display needed).
"""
