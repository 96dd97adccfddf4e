"""The 200 responses of the service, declared for OpenAPI (/docs, /openapi.json).

They document what the pipeline returns; the handlers return the pipeline's dicts unchanged
(extra keys are allowed, so a field added to the result shows up before the schema names it).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())


class Finding(_Open):
    probability: float = Field(description="the finding head's calibrated probability, 0..1")
    positive: bool = Field(description="probability >= threshold")
    threshold: float = Field(description="the decision threshold applied to this finding")


class View(_Open):
    index: int = Field(description="position of the image in the request")
    view: str = Field(description="frontal | lateral | unknown")
    source: str = Field(description="the upload field, e.g. images[0] ('pa.png')")
    height: int = Field(description="original image height in pixels")
    width: int = Field(description="original image width in pixels")


class Heatmap(_Open):
    finding: str
    probability: float
    positive: bool
    view: str
    view_index: int
    has_signal: bool = Field(True, description="false when the map is flat (nothing to show)")
    png_base64: str = Field(description="Grad-CAM overlay on the letterboxed film, PNG, base64")


class Report(_Open):
    report: str = Field(description="the generated report text")
    findings: dict[str, Finding] = Field(description="per finding: probability, positive, threshold")
    views: list[View]
    model: str = Field(description="name of the loaded model")
    threshold: float | None = Field(description="the threshold shared by every finding, or null when they differ")
    timing_ms: dict[str, float] = Field(description="preprocess, model (this study's share of its batch), "
                                                    "heatmaps, total")
    heatmaps: list[Heatmap] | None = Field(None, description="only when heatmaps=true")
    regions: dict[str, str] | None = Field(None, description="only when regions=true: the report split into "
                                                             "lung / heart / mediastinal / bone / others")


class ModelInfo(_Open):
    name: str
    labels: list[str]
    image_size: int
    max_views: int
    threshold: float | None
    thresholds: dict[str, float]
    step: int
    encoder: str
    decoder: str
    parameters: int


class Models(_Open):
    models: list[ModelInfo]
    default: str


class Health(_Open):
    status: str = Field(description="ok")
    model: str
    version: str
