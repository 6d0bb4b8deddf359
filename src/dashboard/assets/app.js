// placeholder: the front end is built in the assets task
