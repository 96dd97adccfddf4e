"""Formats of the outside world around ``inference/``, as ``serve/`` is for HTTP.

    sr.py        a result -> DICOM Comprehensive SR (highdicom), and back to its text
    fhir.py      a result -> FHIR R4 DiagnosticReport with one Observation per assessed finding
    convert.py   a PNG/JPEG film -> DX DICOM (to try a set-up, and for tests and benchmarks)
    spool.py     the listener's only state: received instances, SRs to send, delivery markers
    listener.py  the DICOM C-STORE SCP (pynetdicom) that writes into the spool
    sender.py    C-STORE SCU with back-off: SRs from the outbox to the destination
    service.py   the listener + a worker (quiet period, pipeline, SR) + the sender, together

Results come in as the pipeline's dict (or a typed result with ``to_dict()``); docs/dicom.md
describes the SR, the FHIR resource and an Orthanc set-up.
"""
