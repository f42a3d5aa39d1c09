"""data_prep: prepare Kinetics (annotations -> download -> trim/resize -> manifest -> verify), resumably."""
