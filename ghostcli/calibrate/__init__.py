"""Calibration after ghostify: fit the Ghost modules (and G-Ghost stages) of a ghostified model to its original on
unlabelled images, so a trained model keeps its accuracy without retraining (closed-form initialisation with a
channel choice, block-wise reconstruction, optional distillation), and choose which convs to convert by their
measured redundancy (:func:`select_layers`)."""

from ghostcli.calibrate.closed_form import Choice, FitStats, choose_channels, fit_all, fit_pairs, fixed_pairing
from ghostcli.calibrate.engine import CalibrateOptions, CalibrationReport, CalibrationRow, calibrate_model
from ghostcli.calibrate.images import CalibrationImages, load_images
from ghostcli.calibrate.readers import ReaderGraph, Readers
from ghostcli.calibrate.select import (
    LayerFit,
    Ranking,
    Selection,
    SelectionPoint,
    SelectionReport,
    SelectionUnreachable,
    SelectOptions,
    rank_layers,
    select_layers,
)
from ghostcli.calibrate.units import Unit, find_units

__all__ = [
    "CalibrateOptions",
    "CalibrationImages",
    "CalibrationReport",
    "CalibrationRow",
    "Choice",
    "FitStats",
    "LayerFit",
    "Ranking",
    "ReaderGraph",
    "Readers",
    "SelectOptions",
    "Selection",
    "SelectionPoint",
    "SelectionReport",
    "SelectionUnreachable",
    "Unit",
    "calibrate_model",
    "choose_channels",
    "find_units",
    "fit_all",
    "fit_pairs",
    "fixed_pairing",
    "load_images",
    "rank_layers",
    "select_layers",
]
