"""Builds wing: what the rebuilds of the shipped models (`mtqnet build-pretrained`), the demo and the label-efficiency
study share: the resumable stage ledger (`ledger`), the recipes (`recipes`), the stages every build starts and ends
with (`stages`: data, evaluation, shipping), evaluation by factor (`evaluation`), and each shipped model's own stages
(`teacher`, `student`)."""
