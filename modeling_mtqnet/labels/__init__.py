"""Labels wing (MPL stage 1): intrusive PESQ / STOI / SDI against a clean reference (`intrusive`), teachers that
annotate a manifest with pseudo labels (`annotate`) and DNSMOS P.835 as stand-in primary labels (`stand_in`)."""
