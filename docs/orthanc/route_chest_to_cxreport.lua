-- Orthanc routing rule: send every chest radiograph study (CR/DX series) to cxreport once the
-- study is stable (no new instance for Orthanc's "StableAge" seconds), one association per study.
-- cxreport answers with a DICOM SR stored back into the same study. When that SR arrives the
-- study becomes unstable and then stable again, so this rule runs a second time and sends the
-- films again: cxreport sees the same SOP Instance UIDs and makes no second SR.
-- Needs a "cxreport" entry in DicomModalities (docs/dicom.md).

CXREPORT = 'cxreport'                       -- the DicomModalities entry of the listener
CHEST_PARTS = { [''] = true, ['CHEST'] = true, ['THORAX'] = true, ['LUNG'] = true }

function OnStableStudy(studyId, tags, metadata)
   local series = ParseJson(RestApiGet('/studies/' .. studyId .. '/series'))
   local chest = {}
   for _, s in pairs(series) do
      local modality = s['MainDicomTags']['Modality'] or ''
      local part = string.upper(s['MainDicomTags']['BodyPartExamined'] or '')
      if (modality == 'CR' or modality == 'DX') and CHEST_PARTS[part] then
         table.insert(chest, s['ID'])
      end
   end
   if #chest > 0 then
      print('cxreport: sending ' .. #chest .. ' chest series of study ' .. studyId)
      RestApiPost('/modalities/' .. CXREPORT .. '/store', DumpJson(chest, true))
   end
end
