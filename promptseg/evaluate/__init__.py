"""Standard evaluations of the zero-shot tasks: boundary P/R/F at ODS/OIS and AP for edges
(:mod:`.edges`), average recall of proposals (:mod:`.proposals`) and mask AP of instances
(:mod:`.instances`); the COCO ones use pycocotools (``pip install "promptseg[coco]"``), imported lazily."""

from promptseg.evaluate.edges import EdgeScores, evaluate_edges
from promptseg.evaluate.instances import evaluate_instances
from promptseg.evaluate.proposals import evaluate_proposals

__all__ = ["EdgeScores", "evaluate_edges", "evaluate_instances", "evaluate_proposals"]
