
shopbackend
appbackendweft-system(8Rmesh default