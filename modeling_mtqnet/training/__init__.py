"""Training wing (MPL stage 2): datasets with pseudo-label columns (`data`), the objective-based `MTQNetTrainer`
(`trainer`), the frozen-SSL feature cache, results in the paper's layout (`reporting`) and the recipe behind
`mtqnet train` (`recipe`)."""
