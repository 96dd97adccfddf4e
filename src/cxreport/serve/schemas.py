"""The 200 responses of the service, declared for OpenAPI (/docs, /openapi.json).

They document what the pipeline returns (``StudyReport.to_dict()``, docs/report_schema.md); the
handlers return those dicts unchanged (extra keys are allowed, so a field added to the result shows
up before the schema names it).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())


class Finding(_Open):
    state: str = Field(description="positive | negative | uncertain | not_assessed: what the report was written from "
                                   "(the model's call, or the user's edit)")
    probability: float | None = Field(description="the finding head's calibrated probability, 0..1; null when the "
                                                  "model did not assess it")
    positive: bool | None = Field(description="the state is positive; null when the state is not_assessed")
    threshold: float | None = Field(description="the decision threshold of this finding for the study's population; "
                                                "null when the model did not assess it")
    assessed: bool = Field(description="false: the model did not assess it (too few training examples, or no film "
                                       "the model reads)")
    set_by: str = Field(description="model | user | edit (changed by the user's edits: No Finding beside a positive)")
    model_state: str = Field(description="the model's own call, also after a user's edit")


class View(_Open):
    index: int = Field(description="position of the image in the request")
    view: str = Field(description="frontal | lateral | unknown")
    source: str = Field(description="the upload field, e.g. images[0] ('pa.png')")
    height: int = Field(description="original image height in pixels")
    width: int = Field(description="original image width in pixels")


class Heatmap(_Open):
    finding: str
    probability: float
    state: str = Field(description="the finding's state in the plan the report was written from (the maps show "
                                   "that plan's positive findings, or its most probable one)")
    set_by: str = Field("model", description="who set that state: model | user | edit")
    model_state: str = Field("positive", description="the model's own call for the finding")
    view: str
    view_index: int
    has_signal: bool = Field(True, description="false when the map is flat (nothing to show)")
    png_base64: str = Field(description="Grad-CAM overlay on the letterboxed film, PNG, base64")


class Report(_Open):
    schema_version: str = Field(description="\"2\": the version of this JSON (docs/report_schema.md)")
    report: str = Field(description="the generated report text")
    findings: dict[str, Finding] = Field(description="per finding: state, model_state, probability, threshold, ...")
    not_assessed: list[str] = Field(description="findings the report says nothing about (not assessed)")
    population: str | None = Field(description="the input gate's group for the film (adult, pediatric); its "
                                               "calibration and thresholds were used")
    plan_check: dict | None = Field(description="what the check of the text against its plan changed")
    views: list[View]
    warnings: list[str] = Field(description="what was done to the images (turned upright, greys inverted back, "
                                            "views not used, input check skipped), each naming the image")
    input_check: str = Field(description="passed | skipped (skip_gate) | none (a model without an input gate)")
    model: str = Field(description="name of the loaded model")
    model_sha256: str | None = Field(description="SHA-256 of the weights file")
    cxreport_version: str
    disclaimer: str
    threshold: float | None = Field(description="the threshold shared by every assessed finding, or null when "
                                                "they differ")
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
    thresholds: dict[str, float | None] = Field(description="per finding; null for a finding the model does not "
                                                            "assess")
    populations: dict[str, dict] = Field(description="per input-gate group: its own thresholds")
    assessed: list[str]
    not_assessed: list[str]
    decoding: dict = Field(description="beam, max_len, faithful: what a request that sets none of them gets")
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
