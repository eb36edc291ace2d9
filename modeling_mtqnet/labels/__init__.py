"""Labels wing (MPL stage 1): intrusive PESQ / STOI / SDI against a clean reference (`intrusive`) and teachers that
annotate a manifest with pseudo labels (`annotate`)."""
