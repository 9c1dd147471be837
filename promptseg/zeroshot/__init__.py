"""The SAM paper's zero-shot transfer tasks: edge detection (:mod:`.edges`), object proposals
(:mod:`.proposals`) and instance segmentation from detector boxes (:mod:`.instances`), with the
classical baselines they are measured against (:mod:`.baselines`). Their evaluations are in
:mod:`promptseg.evaluate`; the command line is ``promptseg zeroshot``."""

from promptseg.zeroshot.edges import EdgeDetector, edges
from promptseg.zeroshot.instances import BoxInstanceSegmenter, check_detections
from promptseg.zeroshot.proposals import ProposalGenerator, proposals

__all__ = ["BoxInstanceSegmenter", "EdgeDetector", "ProposalGenerator", "check_detections", "edges", "proposals"]
