"""The ``label`` stage: words for every FFN unit, CLIP-Dissect style.

- ``labelers``: a CLIP model's two towers (open_clip hub models, local checkpoints, the
  bundled demo labeler), embedding probe images and concepts;
- ``concepts``: the concept set (common English words from ``wordfreq``, or a file);
- ``dissect``: SoftWPMI between a unit's top probe images and the concepts;
- ``stage``: ``run_label``, reading the index's probe profiles and writing ``DIR/label``.
"""
