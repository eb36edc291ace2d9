"""Training wing (MPL stage 2): datasets with pseudo-label columns (`data`), the objective-based `MTQNetTrainer`
(`trainer`), the frozen-SSL feature cache, results in the paper's layout (`reporting`), the recipe behind
`mtqnet train` (`recipe`) and its Trainer arguments, whose defaults are the recipe's schedule (`arguments`)."""
